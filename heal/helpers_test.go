package heal

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
)

// t0 is the fixed start of every test: no test reads the clock.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

var testNames = map[string]string{"b": "beta", "g": "gamma", "d": "delta", "e": "epsilon", "z": "zeta"}

func testConfig() Config {
	return Config{Self: "self", Name: func(id string) string { return testNames[id] }}
}

// fakeExec records the calls and fails the action types in fail.
type fakeExec struct {
	calls  []string
	fail   map[ActionType]error
	alerts []Incident
	quar   []Report
}

func (f *fakeExec) rec(t ActionType, s string) error {
	f.calls = append(f.calls, s)
	return f.fail[t]
}
func (f *fakeExec) Reroute(p string, s Scope) error {
	return f.rec(ActReroute, fmt.Sprintf("reroute %s %s", p, s))
}
func (f *fakeExec) Restore(p string, s Scope) error {
	return f.rec(ActRestore, fmt.Sprintf("restore %s %s", p, s))
}
func (f *fakeExec) Rekey(p string) error { return f.rec(ActRekey, "rekey "+p) }
func (f *fakeExec) SwitchTransport(p string) error {
	return f.rec(ActSwitchTransport, "switch-transport "+p)
}
func (f *fakeExec) LowerMTU(p string, mtu int) error {
	return f.rec(ActLowerMTU, fmt.Sprintf("lower-mtu %s %d", p, mtu))
}
func (f *fakeExec) Quarantine(p string, r Report) error {
	f.quar = append(f.quar, r)
	return f.rec(ActQuarantine, "quarantine "+p)
}
func (f *fakeExec) Alert(inc Incident) {
	f.alerts = append(f.alerts, inc)
	f.calls = append(f.calls, fmt.Sprintf("alert %s %s", inc.Subject, inc.Kind))
}

// world drives a loop with one observation and one Tick per simulated second.
type world struct {
	t        *testing.T
	l        *Loop
	ex       *fakeExec
	i        int // seconds elapsed
	links    map[string]LinkSample
	paths    map[string]PathSample
	counters map[string]PeerCounters
}

func newWorld(t *testing.T, cfg Config, neighbours ...string) *world {
	w := &world{t: t, l: New(cfg), ex: &fakeExec{fail: map[ActionType]error{}},
		links: map[string]LinkSample{}, paths: map[string]PathSample{}, counters: map[string]PeerCounters{}}
	for _, n := range neighbours {
		w.links[n] = LinkSample{Peer: n, Up: true}
		w.paths[n] = PathSample{Dest: n, Reachable: true, Via: n}
		w.counters[n] = PeerCounters{Peer: n}
	}
	return w
}

func (w *world) now() time.Time { return at(float64(w.i)) }

// tick observes the world (RTT 20-22 ms and jitter 1-1.5 ms, varying
// deterministically, unless a test set them) and runs the loop once.
func (w *world) tick() []Action {
	o := Observation{Time: w.now()}
	for _, k := range slices.Sorted(maps.Keys(w.links)) {
		s := w.links[k]
		if s.RTT == 0 {
			s.RTT = time.Duration(20+w.i%3) * time.Millisecond
		}
		if s.Jitter == 0 {
			s.Jitter = time.Millisecond + time.Duration(w.i%2)*500*time.Microsecond
		}
		o.Links = append(o.Links, s)
	}
	for _, k := range slices.Sorted(maps.Keys(w.paths)) {
		o.Paths = append(o.Paths, w.paths[k])
	}
	for _, k := range slices.Sorted(maps.Keys(w.counters)) {
		o.Peers = append(o.Peers, w.counters[k])
	}
	w.l.Observe(o)
	acts := w.l.Tick(w.now(), w.ex)
	w.i++
	return acts
}

// run ticks n times and returns every action.
func (w *world) run(n int) []Action {
	var all []Action
	for range n {
		all = append(all, w.tick()...)
	}
	return all
}

// until ticks until cond holds, at most n times, and fails otherwise.
func (w *world) until(n int, what string, cond func([]Action) bool) []Action {
	w.t.Helper()
	var all []Action
	for range n {
		acts := w.tick()
		all = append(all, acts...)
		if cond(acts) {
			return all
		}
	}
	w.t.Fatalf("t=%ds: %s did not happen within %d steps; actions %v; health %+v", w.i, what, n, summary(all), w.l.Health())
	return nil
}

func summary(acts []Action) []string {
	var s []string
	for _, a := range acts {
		s = append(s, fmt.Sprintf("%s %s %s", a.Type, a.Peer, a.Scope))
	}
	return s
}

func has(acts []Action, t ActionType, peer string) (Action, bool) {
	for _, a := range acts {
		if a.Type == t && a.Peer == peer {
			return a, true
		}
	}
	return Action{}, false
}

func incidentOf(t *testing.T, l *Loop, subject string) Incident {
	t.Helper()
	for _, inc := range l.Incidents(0) {
		if inc.Subject == subject {
			return inc
		}
	}
	t.Fatalf("no incident for %q", subject)
	return Incident{}
}
