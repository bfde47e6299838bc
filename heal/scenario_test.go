package heal

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestScenario drives one loop through the three stories the loop exists for:
// a lossy link healed by a reroute, a neighbour failing authentication until
// it is quarantined, and the same kind of incident again, where Knowledge
// makes Plan go straight to what worked.
func TestScenario(t *testing.T) {
	w := newWorld(t, testConfig(), "b", "g", "d")
	w.paths["e"] = PathSample{Dest: "e", Reachable: true, Via: "g"}
	w.paths["z"] = PathSample{Dest: "z", Reachable: true, Via: "d"}

	// Learn the baselines: nothing to do, healthy.
	if acts := w.run(20); len(acts) != 0 {
		t.Fatalf("actions while healthy: %v", summary(acts))
	}
	if h := w.l.Health(); h.State != Healthy || len(h.Reasons) != 0 {
		t.Fatalf("health after warm-up = %+v", h)
	}

	// 1. The link to beta starts losing 30% of probes.
	l := w.links["b"]
	l.Loss = 0.30
	w.links["b"] = l
	acts := w.until(5, "reroute around beta", func(a []Action) bool { _, ok := has(a, ActReroute, "b"); return ok })
	rr, _ := has(acts, ActReroute, "b")
	if rr.Scope != AvoidLink || rr.Kind != KindLinkLoss {
		t.Fatalf("reroute = %+v, want scope link for link-loss", rr)
	}
	h := w.l.Health()
	if h.State != Degraded || len(h.Reasons) != 1 || h.Reasons[0] != "link to beta: loss 30% (baseline 0%)" {
		t.Fatalf("health = %+v", h)
	}
	// Routing moved beta's traffic to gamma; the link itself stays bad for
	// a while, then recovers.
	w.paths["b"] = PathSample{Dest: "b", Reachable: true, Via: "g"}
	if acts := w.run(12); len(acts) != 0 {
		t.Fatalf("actions while the reroute is being verified: %v", summary(acts))
	}
	inc := incidentOf(t, w.l, "b")
	if !inc.Mitigated || inc.Worked != ActReroute || inc.Actions[0].Result != ResWorked {
		t.Fatalf("after verification: mitigated=%v worked=%q actions=%+v", inc.Mitigated, inc.Worked, inc.Actions)
	}
	l.Loss = 0
	w.links["b"] = l
	acts = w.until(15, "restore of beta's link", func(a []Action) bool { _, ok := has(a, ActRestore, "b"); return ok })
	inc = incidentOf(t, w.l, "b")
	if inc.Open || inc.Resolved.IsZero() || inc.Worked != ActReroute || inc.Kind != KindLinkLoss || inc.Fault != FaultLink {
		t.Fatalf("beta's incident = %+v", inc)
	}
	w.paths["b"] = PathSample{Dest: "b", Reachable: true, Via: "b"}
	w.run(1)
	if h := w.l.Health(); h.State != Healthy {
		t.Fatalf("health after recovery = %+v", h)
	}

	// 2. Gamma's packets keep failing authentication.
	bad := func(peer string, n uint64) {
		c := w.counters[peer]
		c.BadAEAD += n
		w.counters[peer] = c
	}
	var all []Action
	for range 10 {
		bad("g", 3)
		all = append(all, w.tick()...)
	}
	if _, ok := has(all, ActAlert, "g"); !ok {
		t.Fatalf("no alert for gamma: %v", summary(all))
	}
	rekey, ok := has(all, ActRekey, "g")
	if !ok || rekey.Kind != KindAuth {
		t.Fatalf("first remedy for gamma = %v, want rekey", summary(all))
	}
	if s := w.l.Health().Reasons; len(s) != 1 || !strings.HasPrefix(s[0], "gamma: ") || !strings.Contains(s[0], "authentication failures") {
		t.Fatalf("reasons = %q", s)
	}
	// The rekey does not help: failures go on, so it is blamed and the
	// loop proposes a quarantine with the evidence.
	all = nil
	for range 15 {
		bad("g", 3)
		acts := w.tick()
		all = append(all, acts...)
		if _, ok := has(acts, ActQuarantine, "g"); ok {
			break
		}
	}
	q, ok := has(all, ActQuarantine, "g")
	if !ok {
		t.Fatalf("no quarantine for gamma: %v", summary(all))
	}
	if q.Report == nil || q.Report.Reporter != "self" || q.Report.Subject != "g" || q.Report.Kind != KindAuth || len(q.Report.Evidence) == 0 {
		t.Fatalf("quarantine report = %+v", q.Report)
	}
	if len(w.ex.quar) != 1 {
		t.Fatalf("executor saw %d quarantines", len(w.ex.quar))
	}
	// Quarantined: the node drops gamma's traffic unopened, counters stop.
	w.run(12)
	inc = incidentOf(t, w.l, "g")
	if !inc.Mitigated || inc.Worked != ActQuarantine {
		t.Fatalf("gamma's incident after quarantine = %+v", inc)
	}
	results := map[ActionType]Result{}
	for _, r := range inc.Actions {
		results[r.Action.Type] = r.Result
	}
	if results[ActRekey] != ResFailed || results[ActQuarantine] != ResWorked || results[ActAlert] != ResDone {
		t.Fatalf("gamma's action results = %v", results)
	}
	w.until(70, "gamma's incident resolving", func([]Action) bool { return !incidentOf(t, w.l, "g").Open })

	// 3. The same kind of incident with delta: quarantine worked last time
	// and rekey did not, so Plan goes straight to quarantine.
	all = nil
	for range 10 {
		bad("d", 3)
		all = append(all, w.tick()...)
	}
	q, ok = has(all, ActQuarantine, "d")
	if !ok {
		t.Fatalf("Knowledge did not make Plan prefer quarantine: %v", summary(all))
	}
	if _, ok := has(all, ActRekey, "d"); ok {
		t.Fatalf("rekey proposed although it failed for this kind: %v", summary(all))
	}
	if !strings.Contains(q.Reason, "score 0.67") {
		t.Fatalf("reason %q does not explain the choice", q.Reason)
	}

	// The whole state exports as JSON.
	b, err := json.Marshal(w.l.Snapshot(10))
	if err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Incidents) != 3 || back.Health.State != Degraded || len(back.Knowledge) == 0 {
		t.Fatalf("snapshot = %s", b)
	}
}
