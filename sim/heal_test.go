package sim

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/heal"
)

func TestParseHealFailures(t *testing.T) {
	fs, err := ParseFailures("lossy:3-7=0.3@20s-40s,lossy:busy=0.25@1m,forge:9@30s-45s")
	if err != nil {
		t.Fatal(err)
	}
	want := []Failure{
		{Kind: "lossy", A: 3, B: 7, Loss: 0.3, At: 20 * time.Second, Until: 40 * time.Second},
		{Kind: "lossy", Busy: true, Loss: 0.25, At: time.Minute},
		{Kind: "forge", A: 9, At: 30 * time.Second, Until: 45 * time.Second},
	}
	if len(fs) != len(want) {
		t.Fatalf("got %+v", fs)
	}
	for i := range want {
		if fs[i] != want[i] {
			t.Errorf("item %d: %+v, want %+v", i, fs[i], want[i])
		}
		if back, err := ParseFailures(fs[i].String()); err != nil || back[0] != fs[i] {
			t.Errorf("%q does not parse back: %+v %v", fs[i].String(), back, err)
		}
	}
	for _, bad := range []string{"lossy:3-7@1s", "lossy:3-7=0@1s", "lossy:3-7=1@1s", "lossy:3-7=x@1s", "lossy:3=0.1@1s", "lossy:3-3=0.1@1s", "lossy:hot=0.1@1s", "forge:x@1s"} {
		if _, err := ParseFailures(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := Run(context.Background(), Options{Nodes: 5, Failures: []Failure{{Kind: "forge", A: 5, At: time.Second}}}); err == nil {
		t.Error("forging node beyond the mesh accepted")
	}
}

// incidentAbout returns node i's newest incident about node j.
func incidentAbout(s *sim, i, j int32) (heal.Incident, bool) {
	for _, inc := range s.nodes[i].h.loop.Incidents(0) {
		if inc.Subject == s.hex[j] {
			return inc, true
		}
	}
	return heal.Incident{}, false
}

// TestHealLossyLinkRerouted degrades the busiest link of a 100-node mesh to
// 30% loss each way. Both ends' MAPE-K loops must open a link-loss incident
// and reroute around the link; the flows that crossed it must be moved off
// it by that reroute and be delivered again; the reroute must be judged to
// have worked (the incident mitigated while the loss lasts, resolved and the
// reroute restored after it ends); and without the loop, the same flows must
// lose more (routing's loss-aware metric moves them too, but later).
func TestHealLossyLinkRerouted(t *testing.T) {
	fs, err := ParseFailures("lossy:busy=0.3@20s-45s")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Nodes: 100, Topology: "random", Seed: 3, Failures: fs, Duration: 75 * time.Second}
	checked := 0
	o.check = func(s *sim, p *Phase) {
		if len(s.rep.Lossy) == 0 {
			return
		}
		L := &s.rep.Lossy[0]
		a, b := int32(L.A), int32(L.B)
		for _, end := range [][2]int32{{a, b}, {b, a}} {
			i, j := end[0], end[1]
			inc, ok := incidentAbout(s, i, j)
			if !ok {
				t.Errorf("%s: n%d has no incident about n%d", p.Event, i, j)
				continue
			}
			if len(inc.Kinds) == 0 || inc.Kinds[0] != heal.KindLinkLoss || inc.Fault != heal.FaultLink {
				t.Errorf("%s: n%d's incident about n%d: kinds %v fault %s, want link-loss blamed on the link", p.Event, i, j, inc.Kinds, inc.Fault)
			}
			if inc.Worked != heal.ActReroute || len(inc.Actions) == 0 || inc.Actions[0].Action.Type != heal.ActReroute || inc.Actions[0].Result != heal.ResWorked {
				t.Errorf("%s: n%d's incident about n%d: worked %q, actions %+v; want a reroute that worked", p.Event, i, j, inc.Worked, inc.Actions)
			}
			metric, _ := s.nodes[i].r.LinkMetric(s.nodes[j].id)
			if strings.HasPrefix(p.Event, "lossy") {
				// The loss still lasts: mitigated, the link avoided.
				if !inc.Open || !inc.Mitigated {
					t.Errorf("%s: n%d's incident about n%d: open %v mitigated %v, want open and mitigated", p.Event, i, j, inc.Open, inc.Mitigated)
				}
				if metric != AvoidMetric {
					t.Errorf("%s: n%d advertises %d for the lossy link, want %d", p.Event, i, metric, AvoidMetric)
				}
			} else {
				// Over: resolved, the reroute lifted.
				last := inc.Actions[len(inc.Actions)-1]
				if inc.Open || inc.Resolved.IsZero() || last.Action.Type != heal.ActRestore {
					t.Errorf("%s: n%d's incident about n%d: open %v, last action %s; want resolved and restored", p.Event, i, j, inc.Open, last.Action.Type)
				}
				if metric == AvoidMetric || metric == 0 {
					t.Errorf("%s: n%d still advertises %d for the recovered link", p.Event, i, metric)
				}
			}
		}
		checked++
	}
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	out := r.String()
	if checked != 2 {
		t.Fatalf("checked %d phases, want 2:\n%s", checked, out)
	}
	if !r.Converged() || r.Errors != 0 || len(r.Warnings) != 0 {
		t.Fatalf("not converged, or errors:\n%s", out)
	}
	L := r.Lossy[0]
	if L.Flows == 0 || L.Reroute <= 0 || L.Reroute > 8*time.Second {
		t.Fatalf("flows %d, reroute after %v:\n%s", L.Flows, L.Reroute, out)
	}
	if L.OnLinkAtReroute == 0 {
		t.Fatalf("routing's own metric had already moved every flow off the link when the loop rerouted it; pick a case where the loop does it:\n%s", out)
	}
	if L.StillOnLink != 0 {
		t.Errorf("%d flows still crossed the lossy link at its end", L.StillOnLink)
	}
	if b, a := L.Before.Ratio(), L.After.Ratio(); b > 0.85 || a < 0.98 {
		t.Errorf("delivery of the flows crossing the lossy link: %.4f before the reroute, %.4f after; want < 0.85 and >= 0.98:\n%s", b, a, out)
	}
	h := r.Heal
	if h.Opened != 2 || h.Resolved != 2 || h.Open != 0 || h.Kinds["link-loss"] != 2 {
		t.Errorf("incidents: %+v, want the two ends' link-loss incidents, both resolved", h)
	}
	if c := h.Actions["reroute"]; c == nil || c.Issued != 2 || c.Worked != 2 {
		t.Errorf("reroutes: %+v, want 2 issued, 2 worked", c)
	}
	if c := h.Actions["restore"]; c == nil || c.Issued != 2 {
		t.Errorf("restores: %+v, want 2", c)
	}
	if !strings.Contains(out, "lossy link") || !strings.Contains(out, "MAPE-K total") {
		t.Errorf("report lacks the MAPE-K section:\n%s", out)
	}

	o.NoHeal, o.check = true, nil
	r0, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	L0 := r0.Lossy[0]
	if L0.A != L.A || L0.B != L.B || L0.Reroute != 0 {
		t.Fatalf("without the loop: link %d-%d, reroute %v", L0.A, L0.B, L0.Reroute)
	}
	with := Delivery{L.Before.Sent + L.After.Sent, L.Before.Delivered + L.After.Delivered}
	without := Delivery{L0.Before.Sent + L0.After.Sent, L0.Before.Delivered + L0.After.Delivered}
	t.Logf("lossy link %d-%d: %d flows; the loop rerouted after %v (%d flows still on it), routing's metric changed after %v; flows off the link after %v (without the loop %v); delivery %.4f before, %.4f after; over the loss %.4f with the loop, %.4f without",
		L.A, L.B, L.Flows, L.Reroute, L.OnLinkAtReroute, L.MetricChange, L.Cleared, L0.Cleared, L.Before.Ratio(), L.After.Ratio(), with.Ratio(), without.Ratio())
	if with.Ratio() <= without.Ratio() {
		t.Errorf("the flows' delivery over the loss: %.4f with the loop, %.4f without", with.Ratio(), without.Ratio())
	}
	if L.Cleared == 0 || L.Cleared > L.Reroute+time.Second || (L0.Cleared != 0 && L0.Cleared <= L.Cleared) {
		t.Errorf("flows off the lossy link after %v with the loop (reroute after %v), %v without", L.Cleared, L.Reroute, L0.Cleared)
	}
}

// TestHealNoFalsePositives runs healthy meshes, without and with a little
// loss on every link: no incident, no action, every node healthy.
func TestHealNoFalsePositives(t *testing.T) {
	for _, topo := range []string{"grid", "random"} {
		for _, loss := range []float64{0, 0.01} {
			r, err := Run(context.Background(), Options{Nodes: 100, Topology: topo, Seed: 1, Loss: loss, Duration: 60 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			h := r.Heal
			if h.Opened != 0 || len(h.Actions) != 0 || h.Healthy != 100 {
				t.Errorf("%s, loss %v: %d incidents %v, actions %v, %d healthy:\n%s", topo, loss, h.Opened, h.Kinds, h.Actions, h.Healthy, r)
			}
		}
	}
}

// TestHealForgedAdverts makes a node send forged adverts: each neighbour's
// router rejects them and reports the neighbour, each neighbour's loop
// quarantines it (and only it), the quarantine is judged to have worked, and
// the tables converge on the mesh without it.
func TestHealForgedAdverts(t *testing.T) {
	const forger = 5
	fs, _ := ParseFailures("forge:5@10s")
	o := Options{Nodes: 60, Topology: "random", Seed: 2, Failures: fs, Duration: 35 * time.Second}
	degree := 0
	o.check = func(s *sim, p *Phase) {
		degree = len(s.nodes[forger].adj)
		if p.Event == "start" {
			return
		}
		for _, a := range s.nodes[forger].adj {
			if !s.nodes[a.nbr].h.quar[forger] {
				t.Errorf("n%d did not quarantine the forger", a.nbr)
			}
			inc, ok := incidentAbout(s, a.nbr, forger)
			if !ok || inc.Kinds[0] != heal.KindForgery || inc.Worked != heal.ActQuarantine {
				t.Errorf("n%d's incident about the forger: %+v", a.nbr, inc)
			}
		}
		if s.quarantines != degree {
			t.Errorf("%d quarantines, want %d (the forger's neighbours, of it)", s.quarantines, degree)
		}
	}
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	out := r.String()
	if !r.Converged() || r.Errors != 0 {
		t.Fatalf("not converged, or errors:\n%s", out)
	}
	if r.ForgedRejected == 0 || r.RouterEvents["forged"] != r.ForgedRejected {
		t.Errorf("forged adverts rejected %d, router events %v", r.ForgedRejected, r.RouterEvents)
	}
	if c := r.Heal.Actions["quarantine"]; c == nil || c.Issued != degree || c.Worked != degree {
		t.Errorf("quarantines %+v, want %d issued and worked:\n%s", c, degree, out)
	}
}
