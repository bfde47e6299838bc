package control_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
)

// clock is a settable clock for the control plane.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// TestTopology feeds heartbeats from four nodes and checks the links the
// topology endpoint derives from them: state from both ends' reports (a
// monitor saying down wins, then the worse loss and RTT), unknown when no
// fresh report measures a link, peers outside the mesh ignored, and
// everything stale once the heartbeats are older than StaleAfter.
func TestTopology(t *testing.T) {
	clk := &clock{}
	ts := startServer(t, func(c *control.Config) { c.Now = clk.now })
	ctx := context.Background()
	_, tok := meshWithToken(t, ts, "topo")
	nodes := map[string]*testNode{}
	for _, name := range []string{"a", "b", "c", "d"} {
		n := ts.newNode()
		n.enroll(t, tok, name)
		nodes[name] = n
	}
	// A node of another mesh, reported as a peer: not part of this topology.
	_, otherTok := meshWithToken(t, ts, "other")
	stranger := ts.newNode()
	stranger.enroll(t, otherTok, "x")

	id := func(name string) string { return nodes[name].id }
	peer := func(name, link string, rtt, loss float64) api.PeerTelemetry {
		return api.PeerTelemetry{ID: id(name), Link: link, RTTMillis: rtt, Loss: loss, RxBytes: 100, TxBytes: 200,
			LastHandshake: time.Now().Add(-time.Second)}
	}
	beats := map[string]api.Heartbeat{
		"a": {Health: "healthy", Uptime: 60, Peers: []api.PeerTelemetry{
			peer("b", "up", 1.5, 0), peer("c", "up", 2, 0.02), peer("d", "down", 0.5, 0.4),
			{ID: stranger.id, Link: "up", RTTMillis: 1}}},
		"b": {Health: "healthy", Peers: []api.PeerTelemetry{
			peer("a", "up", 1.7, 0), peer("c", "up", 700, 0), peer("d", "", 0, 0)}},
		"c": {Health: "degraded", Reasons: []string{"link to a lossy"}, Peers: []api.PeerTelemetry{
			peer("a", "up", 2.2, 0.01), peer("b", "up", 650, 0)},
			Incidents: []api.IncidentReport{{Time: time.Now(), Kind: "loss", Subject: "a", Action: "reroute"},
				{Time: time.Now(), Kind: "loss", Subject: "b", Action: "reroute", Resolved: true}}},
		"d": {Health: "critical", Peers: []api.PeerTelemetry{peer("a", "up", 0.6, 0)}},
	}
	for name, hb := range beats {
		if err := nodes[name].c.Heartbeat(ctx, &hb); err != nil {
			t.Fatalf("heartbeat of %s: %v", name, err)
		}
	}

	topo := must[*apitypes.Topology](t)(ts.admin.Topology(ctx, "topo"))
	if topo.Mesh != "topo" || len(topo.Nodes) != 4 || topo.StaleAfter != control.StaleAfter.String() {
		t.Fatalf("topology: %+v", topo)
	}
	byName := map[string]apitypes.TopologyNode{}
	for _, n := range topo.Nodes {
		byName[n.Name] = n
	}
	if c := byName["c"]; c.Health != "degraded" || c.Incidents != 1 || len(c.Reasons) != 1 || c.Stale || c.LastSeen == nil ||
		c.RxBytes != 200 || c.TxBytes != 400 || c.IPv4 == "" || c.Status != "approved" {
		t.Errorf("node c: %+v", c)
	}
	if a := byName["a"]; a.Uptime != 60 || a.Health != "healthy" {
		t.Errorf("node a: %+v", a)
	}
	key := func(x, y string) [2]string {
		if id(x) > id(y) {
			x, y = y, x
		}
		return [2]string{id(x), id(y)}
	}
	want := map[[2]string]struct {
		state     string
		rtt, loss float64
		reports   int
	}{
		key("a", "b"): {apitypes.LinkGood, 1.7, 0, 2},
		key("a", "c"): {apitypes.LinkDegraded, 2.2, 0.02, 2},
		key("a", "d"): {apitypes.LinkDown, 0.6, 0.4, 2},
		key("b", "c"): {apitypes.LinkBad, 700, 0, 2},
		key("b", "d"): {apitypes.LinkUnknown, 0, 0, 1},
	}
	if len(topo.Links) != len(want) {
		t.Fatalf("%d links, want %d: %+v", len(topo.Links), len(want), topo.Links)
	}
	for _, l := range topo.Links {
		w, ok := want[[2]string{l.A, l.B}]
		if !ok {
			t.Errorf("unexpected link %s-%s", l.A, l.B)
			continue
		}
		if l.State != w.state || l.RTT != w.rtt || l.Loss != w.loss || len(l.Report) != w.reports {
			t.Errorf("link %s-%s: %s rtt %v loss %v (%d reports), want %s rtt %v loss %v (%d)",
				l.A, l.B, l.State, l.RTT, l.Loss, len(l.Report), w.state, w.rtt, w.loss, w.reports)
		}
		if l.Report[0].From != l.A && w.reports == 2 {
			t.Errorf("link %s-%s: A's report not first", l.A, l.B)
		}
		for _, r := range l.Report {
			if r.Stale || r.LastHandshake == nil || r.RxBytes != 100 || r.TxBytes != 200 {
				t.Errorf("link %s-%s: report %+v", l.A, l.B, r)
			}
		}
	}

	// A stranger of another mesh is nowhere in the answer.
	body := ts.call(t, "/api/v1/meshes/topo/topology")
	if strings.Contains(body, stranger.id) {
		t.Fatal("the topology mentions a node of another mesh")
	}

	// Old heartbeats measure nothing: every link is unknown, every node stale.
	clk.advance(control.StaleAfter + time.Second)
	topo = must[*apitypes.Topology](t)(ts.admin.Topology(ctx, "topo"))
	for _, l := range topo.Links {
		if l.State != apitypes.LinkUnknown || l.Age <= control.StaleAfter.Seconds() {
			t.Errorf("stale link %s-%s: %s, age %v", l.A, l.B, l.State, l.Age)
		}
	}
	for _, n := range topo.Nodes {
		if !n.Stale {
			t.Errorf("node %s not stale", n.Name)
		}
	}

	// A revoked node leaves the topology, and its links with it.
	if _, err := ts.admin.RevokeNode(ctx, "topo", "d"); err != nil {
		t.Fatal(err)
	}
	topo = must[*apitypes.Topology](t)(ts.admin.Topology(ctx, "topo"))
	if len(topo.Nodes) != 3 || len(topo.Links) != 3 {
		t.Fatalf("after revoking d: %d nodes, %d links", len(topo.Nodes), len(topo.Links))
	}

	// A mesh without nodes has empty lists, not nulls.
	must[*apitypes.Mesh](t)(ts.admin.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: "empty"}))
	if body := ts.call(t, "/api/v1/meshes/empty/topology"); !strings.Contains(body, `"nodes":[]`) || !strings.Contains(body, `"links":[]`) {
		t.Fatalf("empty mesh: %s", body)
	}
}

// call GETs a path with the admin key and returns the body of a 200.
func (ts *testServer) call(t *testing.T, path string) string {
	t.Helper()
	status, body := ts.rawCall(http.MethodGet, path, ts.adminKey(), nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	return string(body)
}

// TestTopologyRefused checks the answers to bad requests: a bad mesh name,
// a missing mesh, no key, another tenant's mesh (the same as a missing one).
func TestTopologyRefused(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	must[*apitypes.Mesh](t)(ts.admin.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: "mine"}))
	other, _ := ts.newOrg("tenant")
	must[*apitypes.Mesh](t)(other.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: "theirs"}))
	for _, c := range []struct {
		path, key string
		want      int
	}{
		{"/api/v1/meshes/Not_A_Name/topology", ts.adminKey(), http.StatusUnprocessableEntity},
		{"/api/v1/meshes/" + strings.Repeat("a", 64) + "/topology", ts.adminKey(), http.StatusUnprocessableEntity},
		{"/api/v1/meshes/nothere/topology", ts.adminKey(), http.StatusNotFound},
		{"/api/v1/meshes/theirs/topology", ts.adminKey(), http.StatusNotFound},
		{"/api/v1/meshes/mine/topology", "", http.StatusUnauthorized},
		{"/api/v1/meshes/mine/topology", "x0t_key_wrong", http.StatusUnauthorized},
	} {
		if status, body := ts.rawCall(http.MethodGet, c.path, c.key, nil); status != c.want {
			t.Errorf("GET %s: %d, want %d: %s", c.path, status, c.want, body)
		}
	}
	_, theirs := ts.rawCall(http.MethodGet, "/api/v1/meshes/theirs/topology", ts.adminKey(), nil)
	_, missing := ts.rawCall(http.MethodGet, "/api/v1/meshes/nothere/topology", ts.adminKey(), nil)
	if strings.ReplaceAll(string(theirs), "theirs", "X") != strings.ReplaceAll(string(missing), "nothere", "X") {
		t.Errorf("another tenant's mesh and a missing one answer differently:\n%s\n%s", theirs, missing)
	}
	// A viewer may look.
	u := must[*apitypes.User](t)(ts.admin.CreateUser(ctx, apitypes.CreateUserRequest{Name: "watcher", Role: "viewer"}))
	k := must[*apitypes.CreatedKey](t)(ts.admin.CreateKey(ctx, apitypes.CreateKeyRequest{Name: "v", Role: "viewer", UserID: u.ID}))
	if _, err := ts.client(k.Key).Topology(ctx, "mine"); err != nil {
		t.Fatalf("viewer: %v", err)
	}
	if _, err := ts.client(k.Key).Topology(ctx, "theirs"); controlclient.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("viewer, another tenant's mesh: %v", err)
	}
}

// adminKey is the owner key of the operator organization.
func (ts *testServer) adminKey() string {
	if k := ts.srv.AdminKey; k != "" {
		return k
	}
	b, err := os.ReadFile(filepath.Join(ts.dir, control.FileAdminKey))
	if err != nil {
		ts.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
