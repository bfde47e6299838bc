package control_test

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/netmap"
)

// watcher follows a node's netmap stream, verifying every delta with the
// mesh CA and applying it as a node would.
type watcher struct {
	t      *testing.T
	deltas chan *netmap.Delta
	done   chan error
	cancel context.CancelFunc

	mu sync.Mutex
	nm *netmap.Netmap
}

func watch(t *testing.T, n *testNode, ca *identity.Certificate, since uint64) *watcher {
	t.Helper()
	caKey := must[*identity.VerifyingKey](t)(ca.VerifyingKey())
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: t, deltas: make(chan *netmap.Delta, 100), done: make(chan error, 1), cancel: cancel}
	t.Cleanup(cancel)
	go func() {
		w.done <- n.c.StreamNetmap(ctx, since, func(s *netmap.Signed) error {
			d, err := netmap.Open(s, caKey)
			if err != nil {
				return err
			}
			w.mu.Lock()
			next, err := netmap.Apply(w.nm, d)
			if err == nil {
				w.nm = next
			}
			w.mu.Unlock()
			if err != nil {
				return err
			}
			w.deltas <- d
			return nil
		})
	}()
	return w
}

// next waits for the next delta.
func (w *watcher) next(within time.Duration) *netmap.Delta {
	w.t.Helper()
	select {
	case d := <-w.deltas:
		return d
	case err := <-w.done:
		w.t.Fatalf("stream ended: %v", err)
	case <-time.After(within):
		w.t.Fatalf("no netmap delta within %v", within)
	}
	return nil
}

// quiet checks that no delta arrives for a while.
func (w *watcher) quiet(d time.Duration) {
	w.t.Helper()
	select {
	case got := <-w.deltas:
		w.t.Fatalf("unexpected delta %d→%d: upsert %d remove %v revoked %v", got.From, got.To, len(got.Upsert), got.Remove, got.Revoked)
	case err := <-w.done:
		w.t.Fatalf("stream ended: %v", err)
	case <-time.After(d):
	}
}

func (w *watcher) peers() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, p := range w.nm.Peers {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

func peerIDs(d *netmap.Delta) []string {
	var out []string
	for _, p := range d.Upsert {
		out = append(out, p.ID)
	}
	return out
}

// meshWithToken makes a mesh and an unlimited auto-approving token.
func meshWithToken(t *testing.T, ts *testServer, mesh string) (*identity.Certificate, string) {
	ctx := context.Background()
	m := must[*apitypes.Mesh](t)(ts.admin.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: mesh}))
	tok := must[*apitypes.CreatedToken](t)(ts.admin.CreateToken(ctx, mesh, apitypes.CreateTokenRequest{AutoApprove: true, MaxUses: ptr(0)}))
	return must[*identity.Certificate](t)(identity.ParseCertificate(m.CACert)), tok.Secret
}

func TestNetmapStream(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	ca, tok := meshWithToken(t, ts, "prod")
	a, b := ts.newNode(), ts.newNode()
	a.enroll(t, tok, "a")
	b.enroll(t, tok, "b")

	wa := watch(t, a, ca, 0)
	snap := wa.next(5 * time.Second)
	if snap.From != 0 || snap.Rules == nil || len(snap.Rules.Allow) == 0 || snap.Node != a.id || snap.Mesh != "prod" {
		t.Fatalf("snapshot: %+v", snap)
	}
	if got := wa.peers(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("peers %v, want [b]", got)
	}
	if p := snap.Upsert[0]; p.ID != b.id || len(p.Endpoints) != 1 || p.Endpoints[0] != "192.0.2.1:4242" {
		t.Fatalf("peer b: %+v", p)
	}
	pc := must[*identity.Certificate](t)(identity.ParseCertificate(snap.Upsert[0].Cert))
	if err := pc.Verify(ca, time.Now()); err != nil || pc.ID().String() != b.id {
		t.Fatalf("peer certificate: %v", err)
	}

	// A join: one delta upserting the new peer.
	c := ts.newNode()
	c.enroll(t, tok, "c")
	d := wa.next(5 * time.Second)
	if d.From != snap.To || d.To <= d.From || !slices.Equal(peerIDs(d), []string{c.id}) || d.Rules != nil || len(d.Remove) != 0 {
		t.Fatalf("join delta: %+v", d)
	}
	// A tag change reissues c's certificate: an upsert of c.
	must[*apitypes.Node](t)(ts.admin.UpdateNode(ctx, "prod", "c", apitypes.UpdateNodeRequest{Tags: &[]string{"db"}}))
	d = wa.next(5 * time.Second)
	if !slices.Equal(peerIDs(d), []string{c.id}) || !must[*identity.Certificate](t)(identity.ParseCertificate(d.Upsert[0].Cert)).HasTag("db") {
		t.Fatalf("tag delta: %+v", d)
	}
	// An endpoint change from a heartbeat.
	if err := c.c.Heartbeat(ctx, &api.Heartbeat{Endpoints: []string{"198.51.100.7:4242"}, Health: "healthy"}); err != nil {
		t.Fatal(err)
	}
	d = wa.next(5 * time.Second)
	if len(d.Upsert) != 1 || !slices.Equal(d.Upsert[0].Endpoints, []string{"198.51.100.7:4242"}) {
		t.Fatalf("endpoint delta: %+v", d)
	}
	// A heartbeat with the same endpoints changes nothing.
	if err := c.c.Heartbeat(ctx, &api.Heartbeat{Endpoints: []string{"198.51.100.7:4242"}}); err != nil {
		t.Fatal(err)
	}
	wa.quiet(200 * time.Millisecond)

	// A policy change: new rules, no peer change.
	pol := `{"acls":[{"action":"accept","src":["tag:db"],"dst":["*:5432"],"proto":"tcp"}]}`
	if _, _, err := ts.admin.SetACL(ctx, "prod", []byte(pol), ""); err != nil {
		t.Fatal(err)
	}
	d = wa.next(5 * time.Second)
	if d.Rules == nil || len(d.Upsert) != 0 || len(d.Rules.Allow) != 1 || d.Rules.Allow[0].Proto != 6 {
		t.Fatalf("policy delta: %+v", d)
	}

	// Revocation reaches the streaming peer within a second.
	start := time.Now()
	must[*apitypes.Node](t)(ts.admin.RevokeNode(ctx, "prod", "c"))
	d = wa.next(time.Second)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("revocation took %v", took)
	}
	if !slices.Equal(d.Remove, []string{c.id}) || !slices.Equal(d.Revoked, []string{c.id}) {
		t.Fatalf("revocation delta: %+v", d)
	}
	if got := wa.peers(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("peers after revocation %v", got)
	}
	t.Logf("revocation reached the peer in %v", time.Since(start))

	// Deleting a certified node keeps it revoked; deleting b removes it.
	if err := ts.admin.DeleteNode(ctx, "prod", "b"); err != nil {
		t.Fatal(err)
	}
	d = wa.next(5 * time.Second)
	if !slices.Equal(d.Remove, []string{b.id}) || !slices.Equal(d.Revoked, []string{b.id}) {
		t.Fatalf("delete delta: %+v", d)
	}

	// Reconnecting: a new snapshot with a higher version.
	last := d.To
	wa.cancel()
	<-wa.done
	wa2 := watch(t, a, ca, last)
	s2 := wa2.next(5 * time.Second)
	if s2.From != 0 || s2.To <= last || len(s2.Upsert) != 0 || !slices.Contains(s2.Revoked, c.id) {
		t.Fatalf("snapshot after reconnect: %+v (last version %d)", s2, last)
	}
}

func TestNetmapPendingThenApproved(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	ca, auto := meshWithToken(t, ts, "m")
	manual := must[*apitypes.CreatedToken](t)(ts.admin.CreateToken(ctx, "m", apitypes.CreateTokenRequest{}))
	peer := ts.newNode()
	peer.enroll(t, auto, "peer")
	wp := watch(t, peer, ca, 0)
	wp.next(5 * time.Second)

	n := ts.newNode()
	n.enroll(t, manual.Secret, "newcomer")
	w := watch(t, n, ca, 0)
	w.quiet(300 * time.Millisecond)  // pending: nothing
	wp.quiet(100 * time.Millisecond) // and peers do not see it
	if node := must[*apitypes.Node](t)(ts.admin.GetNode(ctx, "m", "newcomer")); !node.Online {
		t.Fatal("a streaming node is not shown online")
	}
	must[*apitypes.Node](t)(ts.admin.ApproveNode(ctx, "m", "newcomer"))
	snap := w.next(5 * time.Second)
	if snap.From != 0 || !slices.Equal(peerIDs(snap), []string{peer.id}) {
		t.Fatalf("snapshot after approval: %+v", snap)
	}
	if d := wp.next(5 * time.Second); !slices.Equal(peerIDs(d), []string{n.id}) {
		t.Fatalf("peer delta after approval: %+v", d)
	}

	// Revoked while streaming: a last delta naming itself, then the end.
	must[*apitypes.Node](t)(ts.admin.RevokeNode(ctx, "m", "newcomer"))
	d := w.next(time.Second)
	if !slices.Contains(d.Revoked, n.id) {
		t.Fatalf("last delta to a revoked node: %+v", d)
	}
	select {
	case err := <-w.done:
		if err == nil {
			t.Fatal("stream ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked node's stream stayed open")
	}
	if err := n.c.StreamNetmap(ctx, 0, func(*netmap.Signed) error { return nil }); !errors.Is(err, controlclient.ErrRevoked) {
		t.Fatalf("reconnect after revocation: %v", err)
	}
}

// TestNetmapCoalesces enrolls a burst of nodes and checks that a streaming
// node gets few deltas, not one per join.
func TestNetmapCoalesces(t *testing.T) {
	ts := startServer(t, func(c *control.Config) { c.Debounce = 300 * time.Millisecond })
	ca, tok := meshWithToken(t, ts, "m")
	a := ts.newNode()
	a.enroll(t, tok, "a")
	w := watch(t, a, ca, 0)
	w.next(5 * time.Second)
	const burst = 20
	var wg sync.WaitGroup
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts.newNode().enroll(t, tok, "n"+string(rune('a'+i)))
		}()
	}
	wg.Wait()
	deltas := 0
	for len(w.peers()) < burst {
		w.next(5 * time.Second)
		deltas++
	}
	if deltas > burst/4 {
		t.Fatalf("%d joins cost %d deltas", burst, deltas)
	}
	t.Logf("%d joins arrived in %d deltas", burst, deltas)
}

func TestNetmapKeepaliveAndRawStream(t *testing.T) {
	ts := startServer(t, func(c *control.Config) { c.Keepalive = 50 * time.Millisecond })
	_, tok := meshWithToken(t, ts, "m")
	n := ts.newNode()
	n.enroll(t, tok, "a")
	req := must[*http.Request](t)(http.NewRequest(http.MethodGet, ts.url+api.PathNetmap+"?since=0", nil))
	api.SignRequest(req, nil, n.key.PublicKeys().ID(), n.key.Signing, time.Now())
	resp := must[*http.Response](t)(ts.rawClient().Do(req))
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var lines []string
	for len(lines) < 3 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 3 || !strings.HasPrefix(lines[0], `{"payload":`) || lines[1] != "" || lines[2] != "" {
		t.Fatalf("stream lines: %.80q", lines)
	}
	// A bad signature, a stale clock and a missing one are refused.
	for name, mod := range map[string]func(*http.Request){
		"unsigned": func(r *http.Request) { r.Header.Del("Authorization") },
		"stale": func(r *http.Request) {
			api.SignRequest(r, nil, n.key.PublicKeys().ID(), n.key.Signing, time.Now().Add(-10*time.Minute))
		},
		"other path": func(r *http.Request) {
			r2 := must[*http.Request](t)(http.NewRequest(http.MethodGet, ts.url+api.PathNode, nil))
			api.SignRequest(r2, nil, n.key.PublicKeys().ID(), n.key.Signing, time.Now())
			r.Header.Set("Authorization", r2.Header.Get("Authorization"))
		},
	} {
		req := must[*http.Request](t)(http.NewRequest(http.MethodGet, ts.url+api.PathNetmap+"?since=0", nil))
		api.SignRequest(req, nil, n.key.PublicKeys().ID(), n.key.Signing, time.Now())
		mod(req)
		resp := must[*http.Response](t)(ts.rawClient().Do(req))
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: status %d %s", name, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// TestShutdownEndsStreams checks the graceful shutdown: streams end, the
// server returns, and the data is there after a restart.
func TestShutdownEndsStreams(t *testing.T) {
	ts := startServer(t, nil)
	ca, tok := meshWithToken(t, ts, "m")
	n := ts.newNode()
	n.enroll(t, tok, "a")
	w := watch(t, n, ca, 0)
	w.next(5 * time.Second)
	start := time.Now()
	ts.stop()
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open after shutdown")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
	ts2 := serve(t, control.Config{Listen: "127.0.0.1:0", DataDir: ts.dir, Logger: testLogger()})
	if ts2.srv.CertFingerprint() != ts.srv.CertFingerprint() {
		t.Fatal("the TLS certificate changed across restarts")
	}
	nodes := must[[]apitypes.Node](t)(ts2.admin.ListNodes(context.Background(), "m", ""))
	if len(nodes) != 1 || nodes[0].Name != "a" {
		t.Fatalf("nodes after restart: %+v", nodes)
	}
}
