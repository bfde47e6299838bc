// Package control is the control plane: the REST API under /api/v1 (huma,
// with its OpenAPI document generated from the handlers), enrollment,
// certificate issue, the per-node signed netmap stream, ACL policies and the
// audit log, on top of package store.
package control

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/store"
	"github.com/x0tta6bl4/x0t/store/sqlite"
)

// Version is the API version reported in the OpenAPI document.
const Version = "1.0.0"

// Config configures a control plane. Zero values take the defaults.
type Config struct {
	Listen   string   // host:port (default :8443)
	DataDir  string   // database, keys, TLS certificate
	TLSCert  string   // PEM files; both or neither
	TLSKey   string   //
	TLSSANs  []string // extra names for a generated certificate
	OrgName  string   // name of the first organization (default "default")
	Logger   *slog.Logger
	Store    store.Store // default: SQLite in DataDir
	Debounce time.Duration
	// Keepalive is the interval of empty lines on netmap streams (15 s).
	Keepalive          time.Duration
	CheckpointInterval time.Duration // signed audit checkpoints (10 min)
	TelemetryFlush     time.Duration // how often heartbeats reach the database (10 s)
	EnrollLimit        Limit         // per client address (5/s, burst 20)
	AuthFailLimit      Limit         // failed authentications per client address (1/s, burst 20)
	Now                func() time.Time
	// MetricsListen is a host:port to serve Prometheus /metrics on, in plain
	// HTTP; "" serves none (Server.MetricsHandler can be mounted elsewhere).
	MetricsListen string
	// TracerProvider receives the API and enrollment spans; nil takes the
	// one the OTEL_* environment describes (off without an OTLP endpoint).
	TracerProvider trace.TracerProvider
}

func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = ":8443"
	}
	if c.OrgName == "" {
		c.OrgName = "default"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Debounce == 0 {
		c.Debounce = 100 * time.Millisecond
	}
	if c.Keepalive == 0 {
		c.Keepalive = 15 * time.Second
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = 10 * time.Minute
	}
	if c.TelemetryFlush == 0 {
		c.TelemetryFlush = 10 * time.Second
	}
	if c.EnrollLimit.Rate == 0 {
		c.EnrollLimit = Limit{Rate: 5, Burst: 20}
	}
	if c.AuthFailLimit.Rate == 0 {
		c.AuthFailLimit = Limit{Rate: 1, Burst: 20}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Server is a control plane.
type Server struct {
	cfg       Config
	log       *slog.Logger
	store     store.Store
	sealer    *sealer
	ckey      *identity.SigningKey // signs audit checkpoints
	tlsCert   *tls.Certificate
	handler   http.Handler
	enroll    *ipLimiter
	authFail  *ipLimiter
	renew     *limiter[string] // certificate renewals per node
	nodeKeys  nodeKeys
	hub       *hub
	telemetry *telemetry
	perms     map[string]role // operation ID → minimum role, for tests and docs
	metrics   *metrics

	tracerProvider trace.TracerProvider
	tracer         trace.Tracer
	stopTracing    func(context.Context) error // flushes an owned provider; nil when not owned
	metricsAddr    net.Addr

	// AdminKey is the owner API key created on first start (empty later).
	AdminKey string

	streamCtx    context.Context // cancelled at shutdown: ends netmap streams
	stopStreams  context.CancelFunc
	bg           sync.WaitGroup
	closeOnce    sync.Once
	listenerAddr net.Addr
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// New opens the data directory (creating it, the keys, the TLS certificate
// and on first start the first organization) and builds the handler.
func New(ctx context.Context, cfg Config) (*Server, error) {
	cfg.defaults()
	if cfg.DataDir == "" {
		return nil, errors.New("control: a data directory is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, store: cfg.Store, perms: map[string]role{},
		enroll: newLimiter[netip.Addr](cfg.EnrollLimit), authFail: newLimiter[netip.Addr](cfg.AuthFailLimit),
		renew:    newLimiter[string](Limit{Rate: 1.0 / 60, Burst: 5}),
		nodeKeys: nodeKeys{m: map[string]*identity.VerifyingKey{}}}
	var err error
	if s.sealer, err = loadSealer(cfg.DataDir); err != nil {
		return nil, err
	}
	if s.ckey, err = loadCheckpointKey(cfg.DataDir); err != nil {
		return nil, err
	}
	if s.tlsCert, err = loadTLS(s.log, cfg.DataDir, cfg.Listen, cfg.TLSSANs, cfg.TLSCert, cfg.TLSKey); err != nil {
		return nil, err
	}
	if s.store == nil {
		if s.store, err = sqlite.Open(ctx, cfg.DataDir); err != nil {
			return nil, err
		}
	}
	if err := s.bootstrap(ctx); err != nil {
		s.store.Close()
		return nil, err
	}
	if err := s.setupTracing(ctx); err != nil {
		s.store.Close()
		return nil, err
	}
	s.streamCtx, s.stopStreams = context.WithCancel(context.Background())
	s.metrics = newMetrics(s)
	s.hub = newHub(s)
	s.telemetry = newTelemetry(s)
	s.store.Subscribe(s.hub.onCommit)
	s.store.Subscribe(s.metrics.onCommit)
	s.handler = s.traceHTTP(s.routes())
	return s, nil
}

// Handler returns the HTTP handler (the whole API).
func (s *Server) Handler() http.Handler { return s.handler }

// Store returns the store (tests, tools).
func (s *Server) Store() store.Store { return s.store }

// TLSCertificate returns the server certificate.
func (s *Server) TLSCertificate() *tls.Certificate { return s.tlsCert }

// CertFingerprint is the SHA-256 of the server certificate, hex.
func (s *Server) CertFingerprint() string { return Fingerprint(s.tlsCert.Certificate[0]) }

// CheckpointKey returns the verifying key of audit checkpoints.
func (s *Server) CheckpointKey() *identity.VerifyingKey { return s.ckey.Public() }

// Addr is the address Serve listens on (after it started).
func (s *Server) Addr() net.Addr { return s.listenerAddr }

// Listen opens the configured TCP address.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	s.listenerAddr = ln.Addr()
	return ln, nil
}

// Serve serves HTTPS on ln until ctx ends, then shuts down gracefully:
// netmap streams end, requests in flight finish (up to 10 s), telemetry is
// flushed and the store closed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.listenerAddr = ln.Addr()
	stopMetrics, err := s.serveMetrics()
	if err != nil {
		ln.Close()
		s.Close()
		return err
	}
	defer stopMetrics()
	srv := &http.Server{
		Handler: s.handler,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS13, // X25519MLKEM768 key exchange by default
			Certificates: []tls.Certificate{*s.tlsCert},
		},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.bg.Add(2)
	go func() { defer s.bg.Done(); s.checkpoints(s.streamCtx) }()
	go func() { defer s.bg.Done(); s.telemetry.run(s.streamCtx) }()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	s.log.Info("control plane listening", "addr", ln.Addr().String(), "tls_sha256", s.CertFingerprint(),
		"data", s.cfg.DataDir, "openapi", "/api/v1/openapi.json")
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	s.log.Info("control plane shutting down")
	s.stopStreams()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		s.log.Warn("shutdown", "err", serr)
		srv.Close()
	}
	if cerr := s.Close(); err == nil || errors.Is(err, http.ErrServerClosed) {
		err = cerr
	}
	return err
}

// Run listens on the configured address and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := s.Listen()
	if err != nil {
		s.Close()
		return err
	}
	return s.Serve(ctx, ln)
}

// Close stops background work, flushes telemetry and closes the store.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.stopStreams()
		s.hub.close()
		s.bg.Wait()
		if ferr := s.telemetry.flush(context.Background()); ferr != nil {
			s.log.Warn("telemetry flush", "err", ferr)
		}
		err = s.store.Close()
		if s.stopTracing != nil {
			// Spans of the last requests are still batched: flush them.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if terr := s.stopTracing(ctx); terr != nil {
				s.log.Warn("flushing traces", "err", terr)
			}
		}
	})
	return err
}

// checkpoints signs each organization's chain head periodically, and once
// more at shutdown, whenever the chain grew since the last signature.
func (s *Server) checkpoints(ctx context.Context) {
	t := time.NewTicker(s.cfg.CheckpointInterval)
	defer t.Stop()
	signed := map[string]uint64{}
	for {
		select {
		case <-ctx.Done():
			s.checkpointAll(context.Background(), signed)
			return
		case <-t.C:
			s.checkpointAll(ctx, signed)
		}
	}
}

func (s *Server) checkpointAll(ctx context.Context, signed map[string]uint64) {
	heads, err := s.store.Heads(ctx)
	if err != nil {
		s.log.Warn("audit checkpoints", "err", err)
		return
	}
	for _, h := range heads {
		if _, ok := signed[h.Org]; !ok { // first round: what an earlier run signed
			if cps, err := s.store.Checkpoints(ctx, h.Org, 1); err == nil && len(cps) == 1 {
				signed[h.Org] = cps[0].OrgSeq
			}
		}
		if signed[h.Org] == h.OrgSeq {
			continue
		}
		if _, err := s.store.Checkpoint(ctx, h.Org, store.KeySigner{Key: s.ckey}); err != nil {
			s.log.Warn("audit checkpoint", "org", h.Org, "err", err)
			continue
		}
		signed[h.Org] = h.OrgSeq
	}
}

// bootstrap creates the first (operator) organization, its owner and an
// owner API key on first start, and writes the key to DataDir/admin.key.
func (s *Server) bootstrap(ctx context.Context) error {
	orgs, err := s.store.List(ctx, store.Query{Kind: kindOrg, Limit: 1})
	if err != nil {
		return err
	}
	if len(orgs) > 0 {
		return nil
	}
	secret, hash, shown := newSecret(prefixAPIKey)
	path := filepath.Join(s.cfg.DataDir, FileAdminKey)
	// The file first: if the commit fails, the next start makes a new key.
	if err := identity.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	orgID, userID, keyID := store.NewID("org"), store.NewID("usr"), store.NewID("key")
	_, err = s.store.Update(ctx, "system", func(tx store.Tx) error {
		org, err := entity(kindOrg, orgID, orgID, "", orgData{Name: s.cfg.OrgName, Operator: true}, orgKey(s.cfg.OrgName))
		if err != nil {
			return err
		}
		user, err := entity(kindUser, userID, orgID, "", userData{Name: "owner", Role: "owner"}, userKey(orgID, "owner"))
		if err != nil {
			return err
		}
		key, err := entity(kindKey, keyID, orgID, "", keyData{Name: "bootstrap", Role: "owner", User: userID, Prefix: shown, Hash: hash}, apiKeyKey(hash))
		if err != nil {
			return err
		}
		for _, p := range []struct {
			a string
			e *store.Entity
		}{{"org.create", org}, {"user.create", user}, {"apikey.create", key}} {
			if err := tx.Put(ctx, p.a, p.e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("control: first organization: %w", err)
	}
	s.AdminKey = secret
	s.log.Info("created the first organization and an owner API key", "org", s.cfg.OrgName, "api_key_file", path)
	return nil
}
