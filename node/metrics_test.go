package node_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/internal/testutil"
	"github.com/x0tta6bl4/x0t/lab"
	"github.com/x0tta6bl4/x0t/node"
	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/transport"
)

// TestNodeMetricsScrape serves a running node's registry over real HTTP,
// scrapes it before and after traffic and a rekey, and checks that every
// family exists, that the counters moved, and that the names pass the
// Prometheus linter.
func TestNodeMetricsScrape(t *testing.T) {
	clock, nodes := clockedMesh(t, 0, "alpha", "beta")
	a, b := nodes[0], nodes[1]
	reg := node.NewRegistry(a.Node)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.Ping(ctx, b, false, 1); err != nil {
		t.Fatal(err)
	}
	// Link monitoring needs a few probes before the link is up.
	deadline := time.Now().Add(5 * time.Second)
	for counter(a, "LinkUps") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("link not up: %v", a.Node.Links())
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := testutil.Scrape(t, srv.URL)
	for _, name := range node.MetricNames() {
		if before[name] == nil {
			t.Errorf("family %s missing from the scrape", name)
		}
	}
	for _, name := range []string{"go_goroutines", "process_open_fds"} {
		if before[name] == nil {
			t.Errorf("family %s missing: no Go or process collector", name)
		}
	}

	// Traffic, then a rekey: the virtual clock passes the 120 s rekey time.
	for seq := 2; seq < 12; seq++ {
		if _, err := a.Ping(ctx, b, seq%2 == 0, seq); err != nil {
			t.Fatal(err)
		}
	}
	// (Simultaneous first handshakes may already count as a session
	// replaced: wait for one more.)
	rekeys := counter(a, "Rekeys")
	for range 100 {
		clock.advance(2 * time.Second)
		time.Sleep(10 * time.Millisecond)
		if counter(a, "Rekeys") > rekeys {
			break
		}
	}
	if _, err := a.Ping(ctx, b, false, 99); err != nil {
		t.Fatal(err)
	}
	after := testutil.Scrape(t, srv.URL)

	peer := []string{"peer", "beta", "peer_id", b.Cert.ID().String()}
	moved := []struct {
		name   string
		labels []string
	}{
		{"x0t_node_bytes_total", []string{"direction", "tx"}},
		{"x0t_node_bytes_total", []string{"direction", "rx"}},
		{"x0t_node_packets_total", []string{"direction", "tx"}},
		{"x0t_node_packets_total", []string{"direction", "rx"}},
		{"x0t_node_peer_bytes_total", append(slices.Clone(peer), "direction", "tx")},
		{"x0t_node_peer_bytes_total", append(slices.Clone(peer), "direction", "rx")},
		{"x0t_node_peer_packets_total", append(slices.Clone(peer), "direction", "rx")},
		{"x0t_node_handshakes_completed_total", nil},
		{"x0t_node_rekeys_total", nil},
		{"x0t_node_peer_last_handshake_timestamp_seconds", peer},
	}
	for _, m := range moved {
		v0, v1 := testutil.Sample(before, m.name, m.labels...), testutil.Sample(after, m.name, m.labels...)
		if v0 < 0 || v1 <= v0 {
			t.Errorf("%s%v did not move: %v -> %v", m.name, m.labels, v0, v1)
		}
	}
	if v := testutil.Sample(after, "x0t_node_handshakes_completed_total"); v < 1 {
		t.Errorf("handshakes completed = %v", v)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"x0t_node_peer_session_up", peer, 1},
		{"x0t_node_peer_direct", peer, 1},
		{"x0t_node_link_up", peer, 1},
		{"x0t_node_peers", nil, 1},
		{"x0t_node_routes", nil, 1},
		{"x0t_node_health_state", []string{"state", "healthy"}, 1},
		{"x0t_node_health_state", []string{"state", "critical"}, 0},
		{"x0t_node_packets_dropped_total", []string{"reason", "auth"}, 0},
		{"x0t_node_handshakes_failed_total", []string{"reason", "decrypt"}, 0},
		{"x0t_node_info", []string{"node", "alpha", "mesh", "test"}, 1},
	} {
		if v := testutil.Sample(after, c.name, c.labels...); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	if rtt := testutil.Sample(after, "x0t_node_link_rtt_seconds", peer...); rtt <= 0 || rtt > 1 {
		t.Errorf("link RTT %v s on loopback", rtt)
	}
	if loss := testutil.Sample(after, "x0t_node_link_loss_ratio", peer...); loss < 0 || loss > 1 {
		t.Errorf("link loss %v", loss)
	}

	problems, err := promtest.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}

// TestMetricsCoverStats gives every Stats counter a distinct value and checks
// that each one is exported: a counter added to Stats without a metric fails
// here.
func TestMetricsCoverStats(t *testing.T) {
	n := idleNode(t)
	st := reflect.ValueOf(n.Stats()).Elem()
	want := map[float64]string{}
	for i := range st.NumField() {
		v := uint64(1_000_003 * (i + 1))
		st.Field(i).Addr().Interface().(*atomic.Uint64).Add(v)
		want[float64(v)] = st.Type().Field(i).Name
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(node.NewCollector(n))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetType() != dto.MetricType_COUNTER {
			continue
		}
		for _, m := range f.GetMetric() {
			delete(want, m.GetCounter().GetValue())
		}
	}
	for _, name := range want {
		t.Errorf("Stats.%s is not exported as a metric", name)
	}
}

// TestMetricNamesWithoutNetwork: the registry of a node that never ran (no
// peers, no sockets in use) gathers, lints clean, and MetricNames lists the
// families a dashboard may use.
func TestMetricNamesWithoutNetwork(t *testing.T) {
	reg := node.NewRegistry(idleNode(t))
	problems, err := promtest.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	names := node.MetricNames()
	if !slices.IsSorted(names) || len(names) < 20 {
		t.Fatalf("MetricNames: %v", names)
	}
	for _, name := range names {
		if !strings.HasPrefix(name, "x0t_node_") {
			t.Errorf("%s: not under x0t_node_", name)
		}
	}
	// The families without per-peer labels are there even with no peers.
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range fams {
		got[f.GetName()] = true
	}
	for _, name := range []string{"x0t_node_bytes_total", "x0t_node_packets_dropped_total", "x0t_node_handshakes_failed_total",
		"x0t_node_health_state", "x0t_node_heal_actions_total", "x0t_node_rekeys_total", "x0t_node_info"} {
		if !got[name] {
			t.Errorf("%s missing", name)
		}
	}
}

// idleNode builds a node without running it.
func idleNode(t *testing.T) *node.Node {
	t.Helper()
	m, err := lab.New("test", nil)
	if err != nil {
		t.Fatal(err)
	}
	key, cert, err := m.Issue("idle", 1, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := identity.NewTrust(m.CA, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := transport.ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n, err := node.New(node.Config{Key: key, Cert: cert, Trust: trust, Device: overlay.NewMemDevice(overlay.DefaultMTU, 16), Conn: conn})
	if err != nil {
		t.Fatal(fmt.Errorf("node: %w", err))
	}
	return n
}
