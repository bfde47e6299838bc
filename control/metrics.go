package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/felixge/httpsnoop"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/x0tta6bl4/x0t/store"
)

// Prometheus metrics of the control plane.
//
// Each Server has its own registry (not the process-wide default), so that
// tests and the lab can run several control planes in one process. The
// metrics are served on a separate plain-HTTP listener (Config.MetricsListen),
// not on the public API listener: they describe the whole service, across
// tenants, and scrapers usually sit on a management network.

// Metric families of the control plane. Label values are bounded: routes are
// chi's route patterns (never raw paths), methods are the standard ones.
const (
	metricRequests     = "x0t_control_http_requests_total"
	metricDuration     = "x0t_control_http_request_duration_seconds"
	metricInFlight     = "x0t_control_http_requests_in_flight"
	metricStreams      = "x0t_control_netmap_streams"
	metricConnected    = "x0t_control_nodes_connected"
	metricStreamMeshes = "x0t_control_netmap_meshes"
	metricNetmapPushes = "x0t_control_netmap_pushes_total"
	metricEnrollments  = "x0t_control_enrollments_total"
	metricAuditEvents  = "x0t_control_audit_events_total"
	metricHeartbeats   = "x0t_control_heartbeats_total"
	routeUnmatched     = "unmatched" // the route label of a request no route matched
	methodNonstandard  = "other"     // the method label of a method outside RFC 9110
	pushSnapshot       = "snapshot"
	pushDelta          = "delta"
	pushRevocation     = "revocation"
	enrollApproved     = "approved"     // a new node, approved by its token
	enrollPending      = "pending"      // a new node awaiting approval
	enrollExisting     = "existing"     // the same keys again: the node's state returned
	enrollRejected     = "rejected"     // refused: bad token or proof, revoked, conflict, invalid input
	enrollRateLimited  = "rate_limited" // over the per-address enrollment rate
	enrollError        = "error"        // the server failed
)

// MetricNames returns the name of every metric family the control plane
// exports besides the Go runtime's go_* and the process's process_*, sorted.
// Families with labels appear in a scrape only once they have a series; this
// is the list to check dashboards and alert rules against.
func MetricNames() []string {
	names := []string{metricRequests, metricDuration, metricInFlight, metricStreams, metricConnected, metricStreamMeshes,
		metricNetmapPushes, metricEnrollments, metricAuditEvents, metricHeartbeats}
	slices.Sort(names)
	return names
}

type metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	inFlight   prometheus.Gauge
	pushes     map[string]prometheus.Counter
	enrolls    *prometheus.CounterVec
	audit      *prometheus.CounterVec
	heartbeats prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRequests,
		Help: "API requests served, by method, route pattern and status code."}, []string{"method", "route", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricDuration,
		Help:    "Time to serve an API request, by method and route pattern (netmap streams last as long as the node stays connected).",
		Buckets: prometheus.DefBuckets}, []string{"method", "route"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{Name: metricInFlight, Help: "API requests being served (open netmap streams included)."})
	pushes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricNetmapPushes,
		Help: "Signed netmap messages sent to nodes: full snapshots, deltas and revocation notices."}, []string{"kind"})
	m.pushes = map[string]prometheus.Counter{}
	for _, k := range []string{pushSnapshot, pushDelta, pushRevocation} {
		m.pushes[k] = pushes.WithLabelValues(k)
	}
	m.enrolls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricEnrollments,
		Help: "Enrollment requests by result: approved, pending, existing, rejected, rate_limited, error."}, []string{"result"})
	for _, r := range []string{enrollApproved, enrollPending, enrollExisting, enrollRejected, enrollRateLimited, enrollError} {
		m.enrolls.WithLabelValues(r)
	}
	m.audit = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricAuditEvents,
		Help: "Events appended to the audit log, by action (mesh.create, node.enroll, ...)."}, []string{"action"})
	m.heartbeats = prometheus.NewCounter(prometheus.CounterOpts{Name: metricHeartbeats, Help: "Node heartbeats accepted."})

	// Stream gauges are read from the netmap hub when scraped.
	hubStat := func(f func(h *hub) int) func() float64 {
		return func() float64 {
			h := s.hub
			if h == nil {
				return 0
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			return float64(f(h))
		}
	}
	streams := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricStreams, Help: "Open netmap streams."},
		hubStat(func(h *hub) int {
			n := 0
			for _, c := range h.online {
				n += c
			}
			return n
		}))
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricConnected,
		Help: "Nodes with at least one open netmap stream."}, hubStat(func(h *hub) int { return len(h.online) }))
	meshes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricStreamMeshes,
		Help: "Meshes with connected nodes (each has a live netmap view)."}, hubStat(func(h *hub) int { return len(h.meshes) }))

	m.reg.MustRegister(m.requests, m.duration, m.inFlight, pushes, m.enrolls, m.audit, m.heartbeats, streams, connected, meshes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// onCommit counts committed audit events (a store subscriber: must not block).
func (m *metrics) onCommit(evs []store.Event) {
	for _, e := range evs {
		m.audit.WithLabelValues(e.Action).Inc()
	}
}

// Registry returns the server's Prometheus registry: the families listed by
// MetricNames plus the Go runtime and process collectors.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// MetricsHandler serves the server's metrics in the Prometheus exposition
// formats.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// MetricsAddr is the address of the metrics listener, nil when there is none.
func (s *Server) MetricsAddr() net.Addr { return s.metricsAddr }

// serveMetrics starts the plain-HTTP metrics listener when one is
// configured. The returned function stops it.
func (s *Server) serveMetrics() (stop func(), err error) {
	if s.cfg.MetricsListen == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", s.cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("control: metrics listener: %w", err)
	}
	s.metricsAddr = ln.Addr()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("metrics listener stopped", "err", err)
		}
	}()
	s.log.Info("metrics listening", "addr", ln.Addr().String(), "path", "/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		<-done
	}, nil
}

// standardMethods bounds the method label: anybody can send any method.
var standardMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true,
	http.MethodDelete: true, http.MethodConnect: true, http.MethodOptions: true, http.MethodTrace: true,
}

// instrument counts and times each request by its chi route pattern once
// routing is done, and names the request's span (started by otelhttp, outside
// the router, before the route was known) after the pattern. It is the
// outermost middleware of the router, so it also sees the recoverer's 500s.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.metrics.inFlight.Inc()
		defer s.metrics.inFlight.Dec()
		code := 0
		ww := httpsnoop.Wrap(w, httpsnoop.Hooks{
			WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
				return func(c int) {
					if code == 0 || code < 200 { // informational answers precede the real one
						code = c
					}
					next(c)
				}
			},
			Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
				return func(b []byte) (int, error) {
					if code == 0 {
						code = http.StatusOK
					}
					return next(b)
				}
			},
		})
		next.ServeHTTP(ww, r)

		if code == 0 {
			code = http.StatusOK // nothing written: net/http answers 200
		}
		route := routeUnmatched
		if rc := chi.RouteContext(r.Context()); rc != nil {
			if p := rc.RoutePattern(); p != "" {
				route = p
			}
		}
		method := r.Method
		if !standardMethods[method] {
			method = methodNonstandard
		}
		if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
			if route != routeUnmatched {
				span.SetName(method + " " + route)
				span.SetAttributes(attrHTTPRoute.String(route))
			} else {
				span.SetName(method)
			}
		}
		s.metrics.requests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
		s.metrics.duration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
	})
}
