package heal

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// scene is what a node observes: links learn a healthy baseline (RTT 20-22
// ms, jitter 1-1.5 ms, no loss) for 20 s unless fresh, then show their
// current state for 3 s; counters, paths and node load come with the current
// state.
type scene struct {
	links []LinkSample // current state; zero RTT and jitter mean healthy values
	fresh bool
	peers []PeerCounters
	paths []PathSample
	node  *NodeSample
}

func up(peer string) LinkSample   { return LinkSample{Peer: peer, Up: true} }
func down(peer string) LinkSample { return LinkSample{Peer: peer} }
func lossy(peer string, loss float64) LinkSample {
	return LinkSample{Peer: peer, Up: true, Loss: loss}
}
func over(l LinkSample, transport string) LinkSample { l.Transport = transport; return l }
func via(dest, hop string) PathSample                { return PathSample{Dest: dest, Reachable: true, Via: hop} }
func lost(dest string) PathSample                    { return PathSample{Dest: dest} }

func healthy(l LinkSample, i int) LinkSample {
	if l.RTT == 0 {
		l.RTT = time.Duration(20+i%3) * time.Millisecond
	}
	if l.Jitter == 0 {
		l.Jitter = time.Millisecond + time.Duration(i%2)*500*time.Microsecond
	}
	return l
}

func (sc scene) monitor() *Monitor {
	m := NewMonitor(testConfig())
	i := 0
	if !sc.fresh {
		for ; i < 20; i++ {
			o := Observation{Time: at(float64(i))}
			for _, l := range sc.links {
				o.Links = append(o.Links, healthy(LinkSample{Peer: l.Peer, Transport: l.Transport, Up: true}, i))
			}
			m.Observe(o)
		}
	}
	for end := i + 3; i < end; i++ {
		o := Observation{Time: at(float64(i)), Paths: sc.paths, Node: sc.node}
		for _, l := range sc.links {
			o.Links = append(o.Links, healthy(l, i))
		}
		if i == end-1 {
			o.Peers = sc.peers
		}
		m.Observe(o)
	}
	return m
}

func (sc scene) now() time.Time {
	if sc.fresh {
		return at(2)
	}
	return at(22)
}

// brief is a symptom reduced to what the root-cause table checks.
func brief(s Symptom) string {
	b := fmt.Sprintf("%s %s %s %s", s.Subject, s.Kind, s.Fault, s.Severity)
	if s.Transport != "" {
		b += " over " + s.Transport
	}
	if s.AltTransport {
		b += " alt"
	}
	return b
}

func TestAnalyzeRootCause(t *testing.T) {
	tests := []struct {
		name   string
		sc     scene
		want   []string
		reason string // of one of the symptoms, when set
	}{
		{"healthy", scene{links: []LinkSample{up("b"), up("g")}, paths: []PathSample{via("b", "b"), via("g", "g")}}, nil, ""},
		{"one lossy link, no path evidence: the link",
			scene{links: []LinkSample{lossy("b", 0.3), up("g"), up("d")}},
			[]string{"b link-loss link degraded"}, "link to beta: loss 30% (baseline 0%)"},
		{"one lossy link, neighbour reachable through another: the link",
			scene{links: []LinkSample{lossy("b", 0.3), up("g")}, paths: []PathSample{via("b", "g"), via("g", "g")}},
			[]string{"b link-loss link degraded"}, "link to beta: loss 30% (baseline 0%)"},
		{"link down and no path to the neighbour at all: the node",
			scene{links: []LinkSample{down("b"), up("g"), up("d")}, paths: []PathSample{lost("b"), via("g", "g"), via("d", "d")}},
			[]string{" no-path local degraded", "b node-down node degraded"},
			"beta: unreachable (every link down, no route through another neighbour)"},
		{"link down, neighbour reachable through another: the link",
			scene{links: []LinkSample{down("b"), up("g")}, paths: []PathSample{via("b", "g"), via("g", "g")}},
			[]string{"b link-down link degraded"}, "link to beta: down"},
		{"lossy link still the only route to the neighbour: the link",
			scene{links: []LinkSample{lossy("b", 0.3), up("g")}, paths: []PathSample{via("b", "b")}},
			[]string{"b link-loss link degraded"}, ""},
		{"all links to a neighbour degraded and no other path: the node",
			scene{links: []LinkSample{over(lossy("b", 0.4), "udp"), over(lossy("b", 0.4), "tls"), up("g"), up("d")}, paths: []PathSample{lost("b")}},
			[]string{" no-path local critical", "b node-degraded node degraded"},
			"beta: every link degraded and no route through another neighbour (tls loss 40% (baseline 0%); udp loss 40% (baseline 0%))"},
		{"one transport of two lossy: the link, switch transport",
			scene{links: []LinkSample{over(lossy("b", 0.3), "udp"), over(up("b"), "tls"), up("g")}},
			[]string{"b link-loss link degraded over udp alt"}, "link to beta: udp loss 30% (baseline 0%)"},
		{"RTT quadruples",
			scene{links: []LinkSample{{Peer: "b", Up: true, RTT: 80 * time.Millisecond}, up("g")}},
			[]string{"b link-rtt link degraded"}, "link to beta: RTT 80ms (baseline 21ms)"},
		{"RTT +3 ms is noise",
			scene{links: []LinkSample{{Peer: "b", Up: true, RTT: 24 * time.Millisecond}, up("g")}}, nil, ""},
		{"jitter rises",
			scene{links: []LinkSample{{Peer: "b", Up: true, Jitter: 20 * time.Millisecond}, up("g")}},
			[]string{"b link-jitter link degraded"}, ""},
		{"loss and RTT: loss leads",
			scene{links: []LinkSample{{Peer: "b", Up: true, Loss: 0.2, RTT: 90 * time.Millisecond}}},
			[]string{"b link-loss link degraded"}, "link to beta: loss 20% (baseline 0%), RTT 90ms (baseline 21ms)"},
		{"three of four neighbours degrade at once: this node",
			scene{links: []LinkSample{lossy("b", 0.3), lossy("g", 0.3), lossy("d", 0.3), up("e")}},
			[]string{" local-degraded local critical", "b link-loss local degraded", "d link-loss local degraded", "g link-loss local degraded"},
			"link to beta: loss 30% (baseline 0%) (blamed on this node)"},
		{"every link down: this node, isolated",
			scene{links: []LinkSample{down("b"), down("g"), down("d")}},
			[]string{" local-degraded local critical", "b link-down local critical", "d link-down local critical", "g link-down local critical"},
			"isolated: every link to all 3 neighbours down"},
		{"both of two links down: too few to blame this node, but critical",
			scene{links: []LinkSample{down("b"), down("g")}},
			[]string{"b link-down link critical", "g link-down link critical"}, ""},
		{"two of four lossy: each link",
			scene{links: []LinkSample{lossy("b", 0.3), lossy("g", 0.3), up("d"), up("e")}},
			[]string{"b link-loss link degraded", "g link-loss link degraded"}, ""},
		{"authentication failures",
			scene{links: []LinkSample{up("g")}, peers: []PeerCounters{{Peer: "g", BadAEAD: 8, BadMAC: 2}}},
			[]string{"g auth-failures node degraded"}, "gamma: 10 authentication failures in 1m0s (bad MAC 2, bad AEAD 8)"},
		{"a few bad tags are noise", scene{peers: []PeerCounters{{Peer: "g", BadAEAD: 9}}}, nil, ""},
		{"duplicates are not a replay flood", scene{peers: []PeerCounters{{Peer: "g", Replays: 999}}}, nil, ""},
		{"replay flood", scene{peers: []PeerCounters{{Peer: "g", Replays: 1000}}}, []string{"g auth-failures node degraded"}, ""},
		{"forged adverts", scene{peers: []PeerCounters{{Peer: "g", ForgedAdverts: 3}}},
			[]string{"g forgery node degraded"}, "gamma: 3 forged adverts in 1m0s"},
		{"advert flood", scene{peers: []PeerCounters{{Peer: "g", FloodedAdverts: 100}}}, []string{"g advert-flood node degraded"}, ""},
		{"failing handshakes blame the node for its dead link",
			scene{links: []LinkSample{down("b"), up("g")}, peers: []PeerCounters{{Peer: "b", HandshakeFailures: 5}}, paths: []PathSample{via("b", "g")}},
			[]string{"b node-down node degraded", "b handshake-failures node degraded"},
			"beta: down, while failing handshakes or authentication"},
		{"no path to 2 of 5",
			scene{paths: []PathSample{via("b", "b"), via("g", "g"), via("d", "d"), lost("e"), lost("z")}},
			[]string{" no-path local degraded"}, "no path to 2 of 5 peers (epsilon, zeta)"},
		{"no path to 3 of 5 is critical",
			scene{paths: []PathSample{via("b", "b"), via("g", "g"), lost("d"), lost("e"), lost("z")}},
			[]string{" no-path local critical"}, ""},
		{"CPU saturated", scene{node: &NodeSample{CPU: 0.95, Queue: 0.5}}, []string{" overload local degraded"}, "overloaded: CPU 95%"},
		{"queue full", scene{node: &NodeSample{Queue: 0.97}}, []string{" overload local degraded"}, "overloaded: queue 97% full"},
		{"fresh link: high loss alarms without a baseline",
			scene{fresh: true, links: []LinkSample{lossy("b", 0.15)}},
			[]string{"b link-loss link degraded"}, "link to beta: loss 15%"},
		{"fresh link: moderate loss waits for a baseline", scene{fresh: true, links: []LinkSample{lossy("b", 0.05)}}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			syms := Analyze(tt.sc.monitor(), tt.sc.now())
			var got []string
			for _, s := range syms {
				got = append(got, brief(s))
			}
			if !reflect.DeepEqual(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				var all []string
				for _, s := range syms {
					all = append(all, brief(s)+": "+s.Reason)
				}
				t.Fatalf("symptoms:\n  %s\nwant %q", strings.Join(all, "\n  "), tt.want)
			}
			if tt.reason != "" {
				found := false
				for _, s := range syms {
					found = found || s.Reason == tt.reason
				}
				if !found {
					t.Errorf("no symptom has the reason %q", tt.reason)
				}
			}
		})
	}
}

func TestAnalyzeIsPure(t *testing.T) {
	m := scene{links: []LinkSample{lossy("b", 0.3), up("g"), down("d")}, peers: []PeerCounters{{Peer: "g", BadAEAD: 20}},
		paths: []PathSample{via("b", "g"), lost("d")}, node: &NodeSample{CPU: 1}}.monitor()
	a, b := Analyze(m, at(22)), Analyze(m, at(22))
	if !reflect.DeepEqual(a, b) || len(a) == 0 {
		t.Fatalf("two analyses differ or found nothing:\n%+v\n%+v", a, b)
	}
	for i := 1; i < len(a); i++ {
		if a[i-1].Subject > a[i].Subject || (a[i-1].Subject == a[i].Subject && a[i-1].Kind.rank() > a[i].Kind.rank()) {
			t.Fatalf("symptoms not sorted: %v before %v", brief(a[i-1]), brief(a[i]))
		}
	}
}
