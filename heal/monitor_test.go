package heal

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestCounterWindow(t *testing.T) {
	type reading struct {
		sec  float64
		bad  uint64 // cumulative BadAEAD
		hand uint64 // cumulative HandshakeFailures
	}
	tests := []struct {
		name      string
		readings  []reading
		now       float64
		after     float64 // count only after this time; <0: all
		bad, hand uint64
	}{
		{"differences of cumulative counters", []reading{{0, 5, 0}, {1, 8, 1}, {2, 8, 3}}, 2, -1, 8, 3},
		{"first reading counts in full", []reading{{0, 4, 2}}, 0, -1, 4, 2},
		{"a reset counts the new value", []reading{{0, 10, 0}, {1, 3, 0}}, 1, -1, 13, 0},
		{"increments older than the window drop out", []reading{{0, 10, 0}, {30, 12, 0}, {61, 13, 0}}, 70, -1, 3, 0},
		{"everything expires", []reading{{0, 10, 0}}, 120, -1, 0, 0},
		{"after: only later buckets", []reading{{0, 10, 0}, {1, 11, 0}, {11, 15, 0}}, 12, 1, 4, 0},
		{"after: nothing new", []reading{{0, 10, 0}, {6, 10, 0}}, 12, 1, 0, 0},
		{"out-of-order reading older than the window is dropped", []reading{{100, 1, 0}, {10, 50, 0}}, 100, -1, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMonitor(Config{})
			for _, r := range tt.readings {
				m.Observe(Observation{Time: at(r.sec), Peers: []PeerCounters{{Peer: "p", BadAEAD: r.bad, HandshakeFailures: r.hand}}})
			}
			var after time.Time
			if tt.after >= 0 {
				after = at(tt.after)
			}
			n := m.counts(m.peers["p"], at(tt.now), after)
			if n[cBadAEAD] != tt.bad || n[cHandshake] != tt.hand {
				t.Errorf("bad AEAD %d, handshakes %d; want %d, %d", n[cBadAEAD], n[cHandshake], tt.bad, tt.hand)
			}
		})
	}
}

func TestBaselineGate(t *testing.T) {
	cfg := Config{AdaptAfter: time.Minute}.withDefaults()
	var s series
	s.init(&cfg)
	for i := range 20 {
		s.add(20+float64(i%3), at(float64(i)), cfg.RTT, &cfg)
	}
	// A lasting rise is kept out of the baseline...
	for i := 20; i < 60; i++ {
		s.add(80, at(float64(i)), cfg.RTT, &cfg)
	}
	if med, _ := s.base.Stats(); med != 21 {
		t.Fatalf("baseline median after 40 s of anomaly = %v, want 21 (frozen)", med)
	}
	if _, bad, warm := s.eval(cfg.RTT, &cfg); !bad || !warm {
		t.Fatalf("80 ms against a 21 ms baseline: bad=%v warm=%v", bad, warm)
	}
	// ...until it has lasted AdaptAfter: then it is the new normal.
	for i := 60; i < 200; i++ {
		s.add(80, at(float64(i)), cfg.RTT, &cfg)
	}
	if med, _ := s.base.Stats(); med != 80 {
		t.Fatalf("baseline median after adapting = %v, want 80", med)
	}
	if _, bad, _ := s.eval(cfg.RTT, &cfg); bad {
		t.Fatal("still anomalous after adapting")
	}
	// A single spike is not admitted and does not make the current value bad.
	s.add(500, at(201), cfg.RTT, &cfg)
	if _, bad, _ := s.eval(cfg.RTT, &cfg); bad {
		t.Fatal("one spike made the link anomalous")
	}
}

func TestMonitorBounds(t *testing.T) {
	cfg := Config{MaxLinks: 2, MaxPeers: 2, MaxPaths: 2}
	m := NewMonitor(cfg)
	for i, id := range []string{"a", "b", "c"} {
		m.Observe(Observation{Time: at(float64(i)),
			Links: []LinkSample{{Peer: id, Up: true}},
			Peers: []PeerCounters{{Peer: id}},
			Paths: []PathSample{{Dest: id, Reachable: true, Via: id}}})
	}
	if len(m.links) != 2 || len(m.peers) != 2 || len(m.paths) != 2 {
		t.Fatalf("sizes %d %d %d, want 2 each", len(m.links), len(m.peers), len(m.paths))
	}
	if _, ok := m.links[linkKey{"a", ""}]; ok {
		t.Fatal("the oldest link was not the one evicted")
	}
	if _, ok := m.peers["a"]; ok {
		t.Fatal("the oldest peer was not the one evicted")
	}
	long := strings.Repeat("x", maxIDLen+1)
	m.Observe(Observation{Time: at(10),
		Links: []LinkSample{{Peer: long, Up: true}, {Peer: "", Up: true}, {Peer: "b", Transport: long}},
		Peers: []PeerCounters{{Peer: long}, {Peer: ""}},
		Paths: []PathSample{{Dest: long}, {Dest: ""}, {Dest: "b", Via: long}}})
	if _, ok := m.links[linkKey{long, ""}]; ok || m.links[linkKey{"", ""}] != nil || m.peers[long] != nil || m.paths[long] != nil || m.paths[""] != nil {
		t.Fatal("invalid IDs were recorded")
	}
}

func TestLinkSampleSanitised(t *testing.T) {
	m := NewMonitor(Config{})
	m.Observe(Observation{Time: t0, Links: []LinkSample{
		{Peer: "a", Up: true, RTT: -time.Second, Loss: math.NaN()},
		{Peer: "b", Up: true, Loss: 7},
		{Peer: "c", Up: true, Loss: -1},
	}})
	a, b, c := m.links[linkKey{"a", ""}], m.links[linkKey{"b", ""}], m.links[linkKey{"c", ""}]
	if a.rtt.recent.median() != 0 || len(a.loss.recent.buf) != 0 {
		t.Errorf("a: rtt %v, %d loss samples; want 0 and none", a.rtt.recent.median(), len(a.loss.recent.buf))
	}
	if b.loss.recent.median() != 1 || c.loss.recent.median() != 0 {
		t.Errorf("loss not clamped: %v %v", b.loss.recent.median(), c.loss.recent.median())
	}
}

func TestLinkDown(t *testing.T) {
	m := NewMonitor(Config{})
	m.Observe(Observation{Time: at(0), Links: []LinkSample{{Peer: "a", Up: true, RTT: 20 * time.Millisecond}}})
	m.Observe(Observation{Time: at(1), Links: []LinkSample{{Peer: "a", Up: false}}})
	m.Observe(Observation{Time: at(2), Links: []LinkSample{{Peer: "a", Up: false, RTT: time.Hour}}})
	l := m.links[linkKey{"a", ""}]
	if l.up || !l.downSince.Equal(at(1)) || len(l.rtt.recent.buf) != 1 {
		t.Fatalf("up=%v downSince=%v rtt samples=%d; want down since t=1 and one RTT sample", l.up, l.downSince, len(l.rtt.recent.buf))
	}
	m.Observe(Observation{Time: at(3), Links: []LinkSample{{Peer: "a", Up: true}}})
	if !l.up || !l.downSince.IsZero() {
		t.Fatal("link did not come back up")
	}
}

func TestPrune(t *testing.T) {
	m := NewMonitor(Config{StaleAfter: 10 * time.Second})
	m.Observe(Observation{Time: at(0),
		Links: []LinkSample{{Peer: "a", Up: true}, {Peer: "b", Up: true}, {Peer: "b", Transport: "tls", Up: true}},
		Peers: []PeerCounters{{Peer: "c"}},
		Paths: []PathSample{{Dest: "x", Reachable: true, Via: "a"}},
		Node:  &NodeSample{CPU: 1}})
	m.Observe(Observation{Time: at(8), Links: []LinkSample{{Peer: "b", Transport: "tls", Up: true}}, Peers: []PeerCounters{{Peer: "a"}}})
	if gone := m.Prune(at(10)); len(gone) != 0 {
		t.Fatalf("pruned too early: %v", gone)
	}
	gone := m.Prune(at(11))
	if len(gone) != 1 || gone[0] != "c" {
		t.Fatalf("gone = %v, want [c] (a still has counters, b still has a link)", gone)
	}
	if len(m.links) != 1 || len(m.paths) != 0 || len(m.node.cpu.buf) != 0 {
		t.Fatalf("left %d links, %d paths, %d cpu samples", len(m.links), len(m.paths), len(m.node.cpu.buf))
	}
	if gone := m.Prune(at(100)); len(gone) != 2 || gone[0] != "a" || gone[1] != "b" {
		t.Fatalf("gone = %v, want [a b]", gone)
	}
}

func TestDropReasons(t *testing.T) {
	m := NewMonitor(Config{})
	drops := map[string]uint64{}
	for i := range 40 {
		drops["queue-full"] = uint64(i) // 1/s
		drops["no-route"] = 0
		if i >= 37 {
			drops["queue-full"] += uint64(i-36) * 500 // a surge
		}
		for j := range 20 {
			drops[strings.Repeat("r", j+1)] = 0
		}
		m.Observe(Observation{Time: at(float64(i)), Node: &NodeSample{Drops: drops}})
	}
	if len(m.node.drops) != maxDropReasons {
		t.Fatalf("%d drop reasons kept, want %d", len(m.node.drops), maxDropReasons)
	}
	if _, ok := m.node.drops[otherDropReason]; !ok {
		t.Fatal("reasons beyond the bound were not folded into other")
	}
	s, ok := overloadSymptom(m, &m.cfg)
	if !ok || s.Kind != KindOverload || !strings.Contains(s.Reason, "mostly queue-full") {
		t.Fatalf("overload = %+v, %v", s, ok)
	}
}
