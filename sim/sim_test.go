package sim

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/route"
)

func TestParseFailures(t *testing.T) {
	fs, err := ParseFailures("link:3-7@20s, node:5@40s-50s,random:10@30s,randnode:2@1m-1m30s")
	if err != nil {
		t.Fatal(err)
	}
	want := []Failure{
		{Kind: "link", A: 3, B: 7, At: 20 * time.Second},
		{Kind: "node", A: 5, At: 40 * time.Second, Until: 50 * time.Second},
		{Kind: "random", Count: 10, At: 30 * time.Second},
		{Kind: "randnode", Count: 2, At: time.Minute, Until: 90 * time.Second},
	}
	if len(fs) != len(want) {
		t.Fatalf("got %+v", fs)
	}
	for i := range want {
		if fs[i] != want[i] {
			t.Errorf("item %d: %+v, want %+v", i, fs[i], want[i])
		}
	}
	if fs[1].String() != "node:5@40s-50s" {
		t.Errorf("String() = %q", fs[1].String())
	}
	for _, bad := range []string{"link:3@1s", "link:3-3@1s", "node:x@1s", "node:1", "node:1@-1s", "node:1@5s-2s", "random:0@1s", "cable:1@1s", "node:1@soon"} {
		if _, err := ParseFailures(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if fs, err := ParseFailures(""); err != nil || len(fs) != 0 {
		t.Errorf("empty spec: %v %v", fs, err)
	}
}

func TestTopologies(t *testing.T) {
	tests := []struct {
		kind  string
		n     int
		links int
	}{
		{"line", 10, 9},
		{"grid", 9, 12},
		{"grid", 10, 13}, // 4 wide: a short last row
		{"random", 200, -1},
	}
	for _, tc := range tests {
		r, err := Run(context.Background(), Options{Nodes: tc.n, Topology: tc.kind, Seed: 3, Duration: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if tc.links >= 0 && r.Links != tc.links {
			t.Errorf("%s %d: %d links, want %d", tc.kind, tc.n, r.Links, tc.links)
		}
	}
	if _, err := Run(context.Background(), Options{Topology: "ring"}); err == nil {
		t.Error("unknown topology accepted")
	}
	if _, err := Run(context.Background(), Options{Nodes: 5, Failures: []Failure{{Kind: "node", A: 5, At: time.Second}}}); err == nil {
		t.Error("failure of a node beyond the mesh accepted")
	}
}

func TestRunConvergesAndDelivers(t *testing.T) {
	first := map[string]string{"line": "link:4-5", "grid": "link:4-12", "random": "random:1"}
	for _, topo := range []string{"line", "grid", "random"} {
		t.Run(topo, func(t *testing.T) {
			fs, err := ParseFailures(first[topo] + "@6s-10s,node:7@8s")
			if err != nil {
				t.Fatal(err)
			}
			r, err := Run(context.Background(), Options{Nodes: 60, Topology: topo, Seed: 7, Failures: fs, Settle: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			out := r.String()
			if !r.Converged() {
				t.Fatalf("not converged:\n%s", out)
			}
			if len(r.Phases) != 4 || r.Errors != 0 || len(r.Warnings) != 0 {
				t.Fatalf("phases/errors:\n%s", out)
			}
			for _, p := range r.Phases[1:] {
				if !strings.HasPrefix(p.Event, "restore") && (p.DetectMax == 0 || p.DetectMax > 200*time.Millisecond) {
					t.Errorf("%s: detection %v", p.Event, p.DetectMax)
				}
				if p.Convergence > 2*time.Second {
					t.Errorf("%s: convergence %v", p.Event, p.Convergence)
				}
				if p.Stretch.Loops != 0 || p.Stretch.Unrouted != 0 {
					t.Errorf("%s: stretch %+v", p.Event, p.Stretch)
				}
			}
			if d := float64(r.Data.DeliveredReachable) / float64(r.Data.SentReachable); d < 0.97 {
				t.Errorf("delivery %.4f:\n%s", d, out)
			}
			for _, want := range []string{"x0t sim: 60 nodes", "control traffic per node", "path stretch", "data drops"} {
				if !strings.Contains(out, want) {
					t.Errorf("report lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	fs, _ := ParseFailures("random:2@5s,lossy:busy=0.3@6s,forge:3@7s")
	o := Options{Nodes: 40, Topology: "random", Seed: 11, Failures: fs, Settle: 10 * time.Second}
	a, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	a.Wall, b.Wall, a.Setup, b.Setup = 0, 0, 0, 0
	if a.String() != b.String() {
		t.Fatalf("two runs differ:\n%s\n%s", a, b)
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Options{Nodes: 30}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestVerifyCacheIsExact(t *testing.T) {
	k, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	var id identity.NodeID
	c := newVerifyCache()
	c.keys = []*identity.VerifyingKey{k.Public()}
	c.index = map[identity.NodeID]int32{id: 0}
	msg := []byte("advert body")
	sig := k.Sign(route.SignLabel, msg)
	if err := c.verify(id, route.SignLabel, msg, sig); err != nil {
		t.Fatal(err)
	}
	if err := c.verify(id, route.SignLabel, msg, sig); err != nil || c.hits != 1 {
		t.Fatalf("second verification: %v, hits %d", err, c.hits)
	}
	// Same origin and signature prefix, different bytes: not a hit.
	bad := append([]byte(nil), sig...)
	bad[len(bad)-1] ^= 1
	if err := c.verify(id, route.SignLabel, msg, bad); err == nil {
		t.Fatal("a changed ML-DSA half was accepted from the cache")
	}
	if err := c.verify(id, route.SignLabel, []byte("other body"), sig); err == nil {
		t.Fatal("another message was accepted from the cache")
	}
	if err := c.verify(id, "other-label", msg, sig); err == nil {
		t.Fatal("another label was accepted from the cache")
	}
	if err := c.verify(identity.NodeID{1}, route.SignLabel, msg, sig); !errors.Is(err, route.ErrUnknownOrigin) {
		t.Fatalf("unknown origin: %v", err)
	}
}

// TestRefreshAndAging runs with a 2 s refresh (6 s max age): refreshes do not
// disturb converged tables, and a crashed node's advert ages out everywhere.
func TestRefreshAndAging(t *testing.T) {
	fs, _ := ParseFailures("node:3@5s")
	var lsdb []int
	o := Options{Nodes: 30, Topology: "random", Seed: 5, Failures: fs, Duration: 20 * time.Second, Refresh: 2 * time.Second}
	o.check = func(s *sim, p *Phase) {
		if p.Event != "start" {
			for i := range s.nodes {
				if s.nodes[i].alive {
					lsdb = append(lsdb, s.nodes[i].r.Stats().LSDBSize)
				}
			}
		}
	}
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Converged() {
		t.Fatalf("not converged:\n%s", r)
	}
	for _, n := range lsdb {
		if n != 29 {
			t.Fatalf("a live router holds %d adverts at the end, want 29 (the dead node's aged out)", n)
		}
	}
	if r.Signed < 30*8 {
		t.Fatalf("only %d adverts signed in 20 s with a 2 s refresh", r.Signed)
	}
}
