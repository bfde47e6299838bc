package heal

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func setLoss(w *world, peer string, loss float64) {
	l := w.links[peer]
	l.Loss = loss
	w.links[peer] = l
}

func results(inc Incident) []string {
	var r []string
	for _, a := range inc.Actions {
		r = append(r, string(a.Action.Type)+"="+string(a.Result))
	}
	return r
}

func TestCreditOnResolve(t *testing.T) {
	w := newWorld(t, testConfig(), "b", "g", "d")
	w.run(20)
	setLoss(w, "b", 0.3)
	w.until(5, "reroute", func(a []Action) bool { _, ok := has(a, ActReroute, "b"); return ok })
	// No path reports change; the link simply recovers before VerifyAfter.
	setLoss(w, "b", 0)
	acts := w.until(12, "restore", func(a []Action) bool { _, ok := has(a, ActRestore, "b"); return ok })
	inc := incidentOf(t, w.l, "b")
	if inc.Open || inc.Worked != ActReroute || inc.Mitigated || inc.Actions[0].Result != ResWorked {
		t.Fatalf("incident = %+v; results %v", inc, results(inc))
	}
	if inc.Resolved.Sub(inc.Started) > 5*time.Second {
		t.Fatalf("resolved at %v: should be when the symptom went, not when the hold ended", inc.Resolved.Sub(inc.Started))
	}
	if len(acts) != 1 {
		t.Fatalf("actions while recovering: %v", summary(acts))
	}
	if s := w.l.k.Score(KindLinkLoss, ActReroute, w.now()); s < 0.66 || s > 0.67 {
		t.Fatalf("score after one success = %v", s)
	}
}

// TestFailedRemediesBackOff: a link stays lossy whatever is done. Every remedy
// is judged failed after VerifyAfter, the next one is tried at once, none is
// repeated before its backoff ends, and when all are spent the loop alerts.
func TestFailedRemediesBackOff(t *testing.T) {
	w := newWorld(t, testConfig(), "b", "g", "d")
	w.run(20)
	setLoss(w, "b", 0.3)
	type issued struct {
		t   int
		typ ActionType
	}
	var log []issued
	for range 120 {
		for _, a := range w.tick() {
			if a.Peer == "b" {
				log = append(log, issued{w.i - 1, a.Type})
			}
		}
	}
	want := []ActionType{ActReroute, ActSwitchTransport, ActLowerMTU, ActAlert, ActReroute}
	if len(log) < len(want) {
		t.Fatalf("issued %v", log)
	}
	for i, typ := range want {
		if log[i].typ != typ {
			t.Fatalf("action %d = %v, want %s (all: %v)", i, log[i], typ, log)
		}
	}
	// Each remedy is judged VerifyAfter (10 s) after it was applied, and the
	// next one goes out in the same step.
	if log[1].t-log[0].t != 10 || log[2].t-log[1].t != 10 || log[3].t != log[2].t+10 {
		t.Fatalf("timing %v", log)
	}
	// The reroute comes back only when its 30 s backoff is over.
	if log[4].t < log[0].t+10+30 {
		t.Fatalf("reroute repeated after %d s, before its backoff ended", log[4].t-log[0].t)
	}
	// Its second failure doubles the backoff.
	for i := 5; i < len(log); i++ {
		if log[i].typ == ActReroute {
			if log[i].t-log[4].t < 10+60 {
				t.Fatalf("third reroute after %d s, want ≥ 70", log[i].t-log[4].t)
			}
		}
		if log[i].typ == ActLowerMTU {
			t.Fatal("MTU lowered twice")
		}
	}
	if s := w.l.k.Score(KindLinkLoss, ActSwitchTransport, w.now()); s >= 0.5 {
		t.Fatalf("switch-transport score after a failure = %v", s)
	}
}

func TestOutcomeError(t *testing.T) {
	w := newWorld(t, testConfig(), "b", "g", "d")
	w.ex.fail[ActReroute] = errors.New("no such route")
	w.run(20)
	setLoss(w, "b", 0.3)
	w.until(5, "reroute", func(a []Action) bool { _, ok := has(a, ActReroute, "b"); return ok })
	inc := incidentOf(t, w.l, "b")
	if r := inc.Actions[0]; r.Result != ResError || r.Error != "no such route" {
		t.Fatalf("record = %+v", r)
	}
	if acts := w.tick(); len(acts) != 1 || acts[0].Type != ActSwitchTransport {
		t.Fatalf("next step: %v, want switch-transport", summary(acts))
	}
	if s := w.l.k.Score(KindLinkLoss, ActReroute, w.now()); s >= 0.5 {
		t.Fatalf("a remedy that could not be applied still scores %v", s)
	}
}

func TestOutcomeTimeout(t *testing.T) {
	l := New(testConfig())
	feed := func(sec int, loss float64) {
		l.Observe(Observation{Time: at(float64(sec)), Links: []LinkSample{
			{Peer: "b", Up: true, RTT: 20 * time.Millisecond, Loss: loss}, {Peer: "g", Up: true, RTT: 20 * time.Millisecond}}})
	}
	for i := range 20 {
		feed(i, 0)
		l.Step(at(float64(i)))
	}
	var first Action
	for i := 20; i < 25 && first.ID == 0; i++ {
		feed(i, 0.3)
		for _, a := range l.Step(at(float64(i))) {
			first = a
		}
	}
	if first.Type != ActReroute {
		t.Fatalf("first action %+v", first)
	}
	// The node never reports an outcome; meanwhile the link recovers, but
	// the incident waits for the outcome before it resolves.
	var next []Action
	for i := 25; i < 60; i++ {
		feed(i, 0)
		next = append(next, l.Step(at(float64(i)))...)
	}
	inc := incidentOf(t, l, "b")
	if inc.Actions[0].Result != ResTimeout {
		t.Fatalf("results %v", results(inc))
	}
	if inc.Open {
		t.Fatal("incident did not resolve after the timeout")
	}
	if len(next) != 0 {
		t.Fatalf("actions after a timed-out reroute whose symptom cleared: %v", summary(next))
	}
	if len(l.k.Scores(at(60))) != 0 {
		t.Fatal("a lost outcome taught the knowledge base something")
	}
	if _, blocked := l.k.Blocked("b", ActReroute, at(60)); !blocked {
		t.Fatal("a timed-out remedy is not backed off")
	}
	// A late outcome is ignored.
	l.Outcome(first.ID, nil, at(61))
	if incidentOf(t, l, "b").Actions[0].Result != ResTimeout {
		t.Fatal("late outcome changed the record")
	}
	l.Outcome(12345, nil, at(61)) // unknown: ignored
}

func TestFlapWithinHold(t *testing.T) {
	w := newWorld(t, testConfig(), "b", "g", "d")
	w.run(20)
	setLoss(w, "b", 0.3)
	w.run(5)
	setLoss(w, "b", 0)
	w.run(3) // gone for ~1 s, less than ResolveHold
	setLoss(w, "b", 0.3)
	w.run(5)
	setLoss(w, "b", 0)
	w.run(12)
	incs := w.l.Incidents(0)
	if len(incs) != 1 || incs[0].Open {
		t.Fatalf("a flap shorter than ResolveHold made %d incidents (open=%v)", len(incs), incs[0].Open)
	}
}

func TestKindChangeIsTheSameIncident(t *testing.T) {
	w := newWorld(t, testConfig(), "b", "g", "d")
	w.paths["b"] = PathSample{Dest: "b", Reachable: true, Via: "g"}
	w.run(20)
	setLoss(w, "b", 0.3)
	w.until(5, "reroute", func(a []Action) bool { _, ok := has(a, ActReroute, "b"); return ok })
	w.run(11) // verified: mitigated
	if inc := incidentOf(t, w.l, "b"); !inc.Mitigated {
		t.Fatalf("not mitigated: %v", results(inc))
	}
	w.links["b"] = LinkSample{Peer: "b"} // now the link dies: the same problem, still routed around
	if acts := w.run(2); len(acts) != 0 {
		t.Fatalf("acted again on a dead link already avoided: %v", summary(acts))
	}
	inc := incidentOf(t, w.l, "b")
	if len(w.l.Incidents(0)) != 1 || inc.Kind != KindLinkDown || len(inc.Kinds) != 2 || !inc.Mitigated {
		t.Fatalf("incident = kind %s kinds %v mitigated %v", inc.Kind, inc.Kinds, inc.Mitigated)
	}
	// Beta vanishes from the routing table too: now the node is at fault,
	// a different problem, so the loop acts again.
	w.paths["b"] = PathSample{Dest: "b"}
	acts := w.until(3, "reroute around the node", func(a []Action) bool {
		r, ok := has(a, ActReroute, "b")
		return ok && r.Scope == AvoidNode
	})
	id := inc.ID
	inc = incidentOf(t, w.l, "b")
	if inc.ID != id || inc.Kind != KindNodeDown || inc.Fault != FaultNode || inc.Mitigated {
		t.Fatalf("incident %d (was %d) = kind %s fault %s mitigated %v", inc.ID, id, inc.Kind, inc.Fault, inc.Mitigated)
	}
	// The lost path is also this node's no-path symptom, which only alerts.
	if _, ok := has(acts, ActAlert, ""); !ok || len(acts) != 2 {
		t.Fatalf("actions %v", summary(acts))
	}
}

func TestSubjectGone(t *testing.T) {
	w := newWorld(t, testConfig(), "b", "g", "d")
	w.run(20)
	setLoss(w, "b", 0.3)
	w.until(5, "reroute", func(a []Action) bool { _, ok := has(a, ActReroute, "b"); return ok })
	delete(w.links, "b") // beta left the netmap
	delete(w.counters, "b")
	delete(w.paths, "b")
	w.l.Observe(Observation{Time: w.now(), Forget: []string{"b"}})
	acts := w.tick()
	inc := incidentOf(t, w.l, "b")
	if inc.Open || inc.Note != "no longer monitored" || inc.Actions[0].Result != ResInconclusive || len(acts) != 1 {
		t.Fatalf("incident = %+v, results %v, actions %v", inc, results(inc), summary(acts))
	}
	if len(w.l.k.Scores(w.now())) != 0 {
		t.Fatal("a departed subject taught the knowledge base something")
	}
}

func TestSubjectStale(t *testing.T) {
	w := newWorld(t, testConfig(), "b", "g", "d")
	w.run(20)
	delete(w.links, "b") // no longer reported, never forgotten explicitly
	delete(w.counters, "b")
	w.run(30)
	if len(w.l.mon.links) != 3 || len(w.l.Incidents(0)) != 0 {
		t.Fatalf("forgotten too early: %d links", len(w.l.mon.links))
	}
	w.run(2)
	if len(w.l.mon.links) != 2 {
		t.Fatalf("%d links after StaleAfter, want 2", len(w.l.mon.links))
	}
}

func TestLocalFault(t *testing.T) {
	w := newWorld(t, testConfig(), "b", "g", "d", "e")
	w.run(20)
	setLoss(w, "b", 0.3)
	w.until(5, "reroute", func(a []Action) bool { _, ok := has(a, ActReroute, "b"); return ok })
	setLoss(w, "g", 0.3)
	setLoss(w, "d", 0.3)
	all := w.run(12)
	if _, ok := has(all, ActLowerMTU, ""); !ok {
		t.Fatalf("local incident: %v", summary(all))
	}
	if _, ok := has(all, ActAlert, ""); !ok {
		t.Fatalf("no alert for a critical local incident: %v", summary(all))
	}
	for _, a := range all {
		if a.Peer != "" {
			t.Fatalf("acted on a peer while this node is at fault: %+v", a)
		}
	}
	if r := incidentOf(t, w.l, "b").Actions[0].Result; r != ResInconclusive {
		t.Fatalf("beta's reroute judged %s while this node was at fault", r)
	}
	if h := w.l.Health(); h.State != Critical || !strings.Contains(h.Reasons[0], "this node is at fault") {
		t.Fatalf("health = %+v", h)
	}
}

func TestHealthSince(t *testing.T) {
	w := newWorld(t, testConfig(), "b", "g", "d")
	if h := w.l.Health(); h.State != Healthy || !h.Since.IsZero() {
		t.Fatalf("before any step: %+v", h)
	}
	w.run(20)
	if h := w.l.Health(); !h.Since.Equal(t0) {
		t.Fatalf("since = %v, want the first step", h.Since)
	}
	setLoss(w, "b", 0.3)
	w.run(5)
	h := w.l.Health()
	if h.State != Degraded || !h.Since.Equal(at(21)) {
		t.Fatalf("health = %+v, want degraded since t=21", h)
	}
}

// TestDeterministic: the same stream gives byte-identical state.
func TestDeterministic(t *testing.T) {
	run := func() []byte {
		w := newWorld(t, testConfig(), "b", "g", "d", "e")
		w.paths["z"] = PathSample{Dest: "z"}
		w.run(20)
		setLoss(w, "b", 0.3)
		setLoss(w, "g", 0.2)
		for range 30 {
			c := w.counters["d"]
			c.BadAEAD += 2
			c.ForgedAdverts++
			w.counters["d"] = c
			w.tick()
		}
		b, err := json.Marshal(w.l.Snapshot(0))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if a, b := run(), run(); string(a) != string(b) {
		t.Fatalf("two runs differ:\n%s\n%s", a, b)
	}
}

// TestConcurrentReaders: the node's API reads while its control loop steps.
func TestConcurrentReaders(t *testing.T) {
	w := newWorld(t, testConfig(), "b", "g", "d")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					_ = w.l.Health()
					_ = w.l.Snapshot(5)
					_ = w.l.Symptoms()
				}
			}
		})
	}
	w.run(20)
	setLoss(w, "b", 0.3)
	w.run(30)
	close(stop)
	wg.Wait()
}

func TestAvoided(t *testing.T) {
	tests := []struct {
		name  string
		scope Scope
		paths []PathSample
		want  bool
	}{
		{"link: no report for the peer", AvoidLink, []PathSample{via("g", "g")}, false},
		{"link: still routed over the link", AvoidLink, []PathSample{via("b", "b")}, false},
		{"link: peer unreachable", AvoidLink, []PathSample{lost("b")}, false},
		{"link: peer through gamma, but another destination still over the link", AvoidLink, []PathSample{via("b", "g"), via("x", "b")}, false},
		{"link: avoided", AvoidLink, []PathSample{via("b", "g"), via("x", "g"), lost("y")}, true},
		{"node: no reports", AvoidNode, nil, false},
		{"node: still relaying", AvoidNode, []PathSample{via("x", "b")}, false},
		{"node: only traffic to the node itself", AvoidNode, []PathSample{via("b", "b"), via("x", "g")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Config{})
			l.Observe(Observation{Time: t0, Paths: tt.paths})
			if got := l.avoided("b", tt.scope); got != tt.want {
				t.Fatalf("avoided = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestEffect checks how an applied remedy is judged while its incident is
// still open.
func TestEffect(t *testing.T) {
	applied := at(10)
	tests := []struct {
		name    string
		kind    Kind
		act     ActionType
		current []Kind
		later   PeerCounters // cumulative counters at t=20 (t=0: all zero)
		want    bool
	}{
		{"auth failures stopped after the quarantine", KindAuth, ActQuarantine, []Kind{KindAuth}, PeerCounters{Peer: "b"}, true},
		{"auth failures go on", KindAuth, ActRekey, []Kind{KindAuth}, PeerCounters{Peer: "b", BadAEAD: 5}, false},
		{"other counters do not count against it", KindAuth, ActRekey, []Kind{KindAuth}, PeerCounters{Peer: "b", HandshakeFailures: 5}, true},
		{"forgeries go on", KindForgery, ActQuarantine, []Kind{KindForgery}, PeerCounters{Peer: "b", ForgedAdverts: 1}, false},
		{"handshakes still failing", KindHandshake, ActSwitchTransport, []Kind{KindHandshake}, PeerCounters{Peer: "b", HandshakeFailures: 1}, false},
		{"flood stopped", KindFlood, ActQuarantine, []Kind{KindFlood}, PeerCounters{Peer: "b"}, true},
		{"its symptom is gone, another remains", KindLinkJitter, ActSwitchTransport, []Kind{KindAuth}, PeerCounters{Peer: "b"}, true},
		{"loss turned into a dead link: same problem", KindLinkLoss, ActSwitchTransport, []Kind{KindLinkDown}, PeerCounters{Peer: "b"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Config{})
			l.Observe(Observation{Time: at(0), Peers: []PeerCounters{{Peer: "b"}}})
			l.Observe(Observation{Time: at(20), Peers: []PeerCounters{tt.later}})
			inc := &Incident{Subject: "b", Open: true}
			for _, k := range tt.current {
				inc.Symptoms = append(inc.Symptoms, Symptom{Kind: k, Subject: "b"})
			}
			r := &ActionRecord{Action: Action{Type: tt.act, Kind: tt.kind}, Applied: applied, Result: ResApplied}
			if got := l.effect(inc, r, at(21)); got != tt.want {
				t.Fatalf("effect = %v, want %v", got, tt.want)
			}
		})
	}
}
