package control_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
	"github.com/x0tta6bl4/x0t/internal/testutil"
)

// TestControlMetricsScrape scrapes a control plane's metrics listener over
// real HTTP before and after an admin request, an enrollment, a netmap
// stream and a heartbeat, and checks that every family exists and moved,
// that routes are patterns (never raw paths) and that the names lint clean.
func TestControlMetricsScrape(t *testing.T) {
	ts := startServer(t, func(c *control.Config) { c.MetricsListen = "127.0.0.1:0" })
	// A second control plane in the same process has a registry of its own.
	other := startServer(t, func(c *control.Config) { c.MetricsListen = "127.0.0.1:0" })
	url := "http://" + ts.srv.MetricsAddr().String() + "/metrics"
	before := testutil.Scrape(t, url)
	if testutil.Sample(before, "x0t_control_enrollments_total", "result", "approved") != 0 {
		t.Fatalf("enrollments before any: %v", testutil.Sample(before, "x0t_control_enrollments_total", "result", "approved"))
	}

	ctx := context.Background()
	ca, token := meshWithToken(t, ts, "metered")
	n := ts.newNode()
	n.enroll(t, token, "web")
	w := watch(t, n, ca, 0)
	w.next(5 * time.Second) // the snapshot
	if err := n.c.Heartbeat(ctx, &api.Heartbeat{Health: "healthy", Uptime: 1}); err != nil {
		t.Fatal(err)
	}
	// An unknown path with an ID in it must not become a route label.
	resp, err := ts.rawClient().Get(ts.url + "/no/such/path/0123456789")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	must[*apitypes.Mesh](t)(ts.admin.GetMesh(ctx, "metered"))

	after := testutil.Scrape(t, url)
	for _, name := range control.MetricNames() {
		if after[name] == nil {
			t.Errorf("family %s missing from the scrape", name)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if after[name] == nil {
			t.Errorf("family %s missing: no Go or process collector", name)
		}
	}
	for _, c := range []struct {
		name    string
		labels  []string
		atLeast float64
	}{
		{"x0t_control_http_requests_total", []string{"method", "POST", "route", "/api/v1/meshes"}, 1},
		{"x0t_control_http_requests_total", []string{"method", "POST", "route", api.PathEnroll, "code", "200"}, 1},
		{"x0t_control_http_requests_total", []string{"method", "GET", "route", "/api/v1/meshes/{mesh}", "code", "200"}, 1},
		{"x0t_control_http_requests_total", []string{"method", "GET", "route", "unmatched", "code", "404"}, 1},
		{"x0t_control_http_request_duration_seconds", []string{"method", "POST", "route", api.PathEnroll}, 1},
		{"x0t_control_enrollments_total", []string{"result", "approved"}, 1},
		{"x0t_control_audit_events_total", []string{"action", "node.enroll"}, 1},
		{"x0t_control_audit_events_total", []string{"action", "mesh.create"}, 1},
		{"x0t_control_netmap_pushes_total", []string{"kind", "snapshot"}, 1},
		{"x0t_control_netmap_streams", nil, 1},
		{"x0t_control_nodes_connected", nil, 1},
		{"x0t_control_netmap_meshes", nil, 1},
		{"x0t_control_heartbeats_total", nil, 1},
		{"x0t_control_http_requests_in_flight", nil, 1}, // the open stream
	} {
		v0, v1 := testutil.Sample(before, c.name, c.labels...), testutil.Sample(after, c.name, c.labels...)
		if v1 < c.atLeast || v1 <= v0 {
			t.Errorf("%s%v: %v -> %v, want at least %v", c.name, c.labels, v0, v1, c.atLeast)
		}
	}
	for _, m := range after["x0t_control_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "route" && (strings.Contains(l.GetValue(), "metered") || strings.Contains(l.GetValue(), "0123456789")) {
				t.Errorf("raw path as a route label: %q", l.GetValue())
			}
		}
	}
	// The stream ends: the gauges come down.
	w.cancel()
	deadline := time.Now().Add(5 * time.Second)
	for testutil.Sample(testutil.Scrape(t, url), "x0t_control_nodes_connected") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("nodes_connected did not come down after the stream ended")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if v := testutil.Sample(testutil.Scrape(t, "http://"+other.srv.MetricsAddr().String()+"/metrics"), "x0t_control_enrollments_total", "result", "approved"); v != 0 {
		t.Errorf("the other control plane counted %v enrollments", v)
	}
	problems, err := promtest.GatherAndLint(ts.srv.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	if names := control.MetricNames(); !slices.IsSorted(names) {
		t.Errorf("MetricNames not sorted: %v", names)
	}
}

// TestControlMetricsRejectedEnrollment: refused enrollments are counted
// apart from successful ones, and a repeat of the same keys as existing.
func TestControlMetricsRejectedEnrollment(t *testing.T) {
	ts := startServer(t, nil)
	_, token := meshWithToken(t, ts, "m")
	n := ts.newNode()
	n.enroll(t, token, "a")
	n.enroll(t, token, "a")
	bad := ts.newNode()
	if _, err := bad.c.Enroll(context.Background(), controlclient.NewEnrollRequest("x0t_join_not-a-token", "b", bad.key, nil)); err == nil {
		t.Fatal("enrolled with a bogus token")
	}
	reg := ts.srv.Registry()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	for result, want := range map[string]float64{"approved": 1, "existing": 1, "rejected": 1, "pending": 0, "error": 0} {
		if got := testutil.Sample(byName, "x0t_control_enrollments_total", "result", result); got != want {
			t.Errorf("enrollments{result=%q} = %v, want %v", result, got, want)
		}
	}
}
