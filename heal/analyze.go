package heal

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// linkVerdict is Analyze's view of one link.
type linkVerdict struct {
	l    *linkState
	down bool
	bad  bool // down or anomalous
	kind Kind // KindLinkDown, KindLinkLoss, KindLinkRTT or KindLinkJitter when bad
	ev   []Evidence
	desc []string // "loss 30% (baseline 0%)"
}

// evalLink tests one link's current values against its baselines. Loss is
// checked first because it hurts most; the verdict's kind is the first
// anomalous metric in the order loss, RTT, jitter.
func evalLink(l *linkState, c *Config, now time.Time) linkVerdict {
	v := linkVerdict{l: l}
	if !l.up {
		v.down, v.bad, v.kind = true, true, KindLinkDown
		d := now.Sub(l.downSince)
		v.ev = append(v.ev, Evidence{Metric: "down", Transport: l.transport, Value: finite(max(d.Seconds(), 0))})
		v.desc = append(v.desc, "down")
		return v
	}
	loss, bad, warm := l.loss.eval(c.Loss, c)
	if bad || (loss.Value >= c.LossAlarm && len(l.loss.recent.buf) > 0) {
		loss.Metric, loss.Transport = "loss", l.transport
		if !bad {
			loss.Note = fmt.Sprintf("at or above the %s alarm", pct(c.LossAlarm))
		}
		v.add(KindLinkLoss, loss, describe("loss", loss, warm, pct))
	}
	if rtt, bad, warm := l.rtt.eval(c.RTT, c); bad {
		rtt.Metric, rtt.Transport = "rtt_ms", l.transport
		v.add(KindLinkRTT, rtt, describe("RTT", rtt, warm, msec))
	}
	if jit, bad, warm := l.jitter.eval(c.Jitter, c); bad {
		jit.Metric, jit.Transport = "jitter_ms", l.transport
		v.add(KindLinkJitter, jit, describe("jitter", jit, warm, msec))
	}
	return v
}

func (v *linkVerdict) add(k Kind, e Evidence, desc string) {
	if !v.bad {
		v.bad, v.kind = true, k
	}
	v.ev = append(v.ev, e)
	v.desc = append(v.desc, desc)
}

func describe(name string, e Evidence, warm bool, f func(float64) string) string {
	if !warm {
		return fmt.Sprintf("%s %s", name, f(e.Value))
	}
	return fmt.Sprintf("%s %s (baseline %s)", name, f(e.Value), f(e.Baseline))
}

// pct formats a fraction as a percentage: "30%", "2.5%".
func pct(v float64) string {
	p := math.Round(v*1000) / 10
	if p == math.Trunc(p) {
		return fmt.Sprintf("%.0f%%", p)
	}
	return fmt.Sprintf("%.1f%%", p)
}

// msec formats milliseconds: "180ms", "2.5ms".
func msec(v float64) string {
	if v >= 10 || v == math.Trunc(v) {
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.1fms", v)
}

// Analyze is the A of MAPE-K: it reads the monitor's windows at time now and
// returns the symptoms, sorted by subject ("" first) and precedence. It does
// not change the monitor.
//
// Root-cause rules, in order (docs/healing.md explains them):
//
//  1. A peer whose counters cross a threshold in the counter window is at
//     fault itself: forgery, auth failures, advert flood, failing handshakes.
//  2. If at least LocalMinPeers neighbours are monitored and at least
//     LocalFraction of them have a bad link, this node is at fault
//     (local-degraded); the per-link symptoms stay, blamed on this node.
//  3. A neighbour with a bad link is at fault itself if rule 1 blamed it, or if
//     all its links are bad and the routing table has no path to it through
//     another neighbour (node-down, node-degraded).
//  4. Otherwise the link is at fault: another transport to the neighbour is
//     healthy, or the neighbour is reachable through another neighbour, or
//     there is no evidence either way (the cheaper guess).
//  5. Destinations without a route are one no-path symptom of this node;
//     CPU, queue or drop-rate trouble is an overload symptom.
func Analyze(m *Monitor, now time.Time) []Symptom {
	c := &m.cfg
	var out []Symptom

	// Rule 1: counters.
	blamed := map[string]bool{}
	for _, id := range slices.Sorted(maps.Keys(m.peers)) {
		for _, s := range counterSymptoms(id, m.counts(m.peers[id], now, time.Time{}), c) {
			blamed[id] = true
			out = append(out, s)
		}
	}

	// Links, by neighbour.
	byPeer := map[string][]linkVerdict{}
	for _, l := range m.links {
		byPeer[l.peer] = append(byPeer[l.peer], evalLink(l, c, now))
	}
	neighbours := slices.Sorted(maps.Keys(byPeer))
	badPeers, downPeers := 0, 0
	for _, id := range neighbours {
		vs := byPeer[id]
		slices.SortFunc(vs, func(a, b linkVerdict) int { return strings.Compare(a.l.transport, b.l.transport) })
		anyBad, allDown := false, true
		for _, v := range vs {
			anyBad = anyBad || v.bad
			allDown = allDown && v.down
		}
		if anyBad {
			badPeers++
		}
		if allDown {
			downPeers++
		}
	}
	isolated := len(neighbours) > 0 && downPeers == len(neighbours)
	// Rule 2.
	local := len(neighbours) >= c.LocalMinPeers && float64(badPeers) >= c.LocalFraction*float64(len(neighbours))

	// Rules 3 and 4.
	for _, id := range neighbours {
		s, ok := linkSymptom(id, byPeer[id], m.paths[id], blamed[id], local, c)
		if !ok {
			continue
		}
		if isolated {
			s.Severity = Critical
		}
		out = append(out, s)
	}

	if local {
		out = append(out, localSymptom(neighbours, byPeer, badPeers, downPeers, c))
	}
	if s, ok := noPathSymptom(m, c); ok {
		out = append(out, s)
	}
	if s, ok := overloadSymptom(m, c); ok {
		out = append(out, s)
	}
	slices.SortStableFunc(out, func(a, b Symptom) int {
		if a.Subject != b.Subject {
			return strings.Compare(a.Subject, b.Subject)
		}
		return a.Kind.rank() - b.Kind.rank()
	})
	return out
}

// counterSymptoms applies rule 1 to one peer's window sums.
func counterSymptoms(id string, n [nCounters]uint64, c *Config) []Symptom {
	name := c.name(id)
	win := c.CounterWindow
	ev := func(idx ...int) []Evidence {
		var es []Evidence
		for _, i := range idx {
			if n[i] > 0 {
				es = append(es, Evidence{Metric: counterMetric[i], Value: float64(n[i])})
			}
		}
		return es
	}
	node := func(k Kind, reason string, e []Evidence) Symptom {
		return Symptom{Kind: k, Subject: id, Fault: FaultNode, Severity: Degraded, Reason: reason, Evidence: e}
	}
	var out []Symptom
	if n[cForged] >= c.ForgeryThreshold {
		out = append(out, node(KindForgery, fmt.Sprintf("%s: %d forged adverts in %v", name, n[cForged], win), ev(cForged)))
	}
	if auth := satAdd(n[cBadMAC], n[cBadAEAD]); auth >= c.AuthThreshold || n[cReplays] >= c.ReplayThreshold {
		var parts []string
		for _, p := range []struct {
			i    int
			name string
		}{{cBadMAC, "bad MAC"}, {cBadAEAD, "bad AEAD"}, {cReplays, "replays"}} {
			if n[p.i] > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", p.name, n[p.i]))
			}
		}
		out = append(out, node(KindAuth, fmt.Sprintf("%s: %d authentication failures in %v (%s)",
			name, satAdd(auth, n[cReplays]), win, strings.Join(parts, ", ")), ev(cBadMAC, cBadAEAD, cReplays)))
	}
	if n[cFlooded] >= c.FloodThreshold {
		out = append(out, node(KindFlood, fmt.Sprintf("%s: %d adverts over the rate limit in %v", name, n[cFlooded], win), ev(cFlooded)))
	}
	if n[cHandshake] >= c.HandshakeThreshold {
		out = append(out, node(KindHandshake, fmt.Sprintf("%s: %d failed handshakes in %v", name, n[cHandshake], win), ev(cHandshake)))
	}
	return out
}

// linkSymptom applies rules 3 and 4 to one neighbour's links.
func linkSymptom(id string, vs []linkVerdict, path *pathState, blamed, local bool, c *Config) (Symptom, bool) {
	var bad []linkVerdict
	allDown := true
	for _, v := range vs {
		if v.bad {
			bad = append(bad, v)
			allDown = allDown && v.down
		}
	}
	if len(bad) == 0 {
		return Symptom{}, false
	}
	allBad := len(bad) == len(vs)
	allDown = allDown && allBad
	name := c.name(id)
	s := Symptom{Subject: id, Severity: Degraded}
	var descs []string
	worst := bad[0]
	for _, v := range bad {
		s.Evidence = append(s.Evidence, v.ev...)
		d := strings.Join(v.desc, ", ")
		if v.l.transport != "" && len(vs) > 1 {
			d = v.l.transport + " " + d
		}
		descs = append(descs, d)
		if v.kind.rank() < worst.kind.rank() {
			worst = v
		}
	}
	what := strings.Join(descs, "; ")
	linkFault := func(why string) {
		s.Fault, s.Kind, s.Transport = FaultLink, worst.kind, worst.l.transport
		s.Reason = fmt.Sprintf("link to %s: %s", name, what)
		if why != "" {
			s.Evidence = append(s.Evidence, Evidence{Metric: "alternative", Note: why})
		}
	}
	nodeFault := func(reason string) {
		s.Fault, s.Kind, s.Reason = FaultNode, KindNodeDegrade, reason
		if allDown {
			s.Kind = KindNodeDown
		}
	}
	switch {
	case blamed:
		nodeFault(fmt.Sprintf("%s: %s, while failing handshakes or authentication", name, what))
	case local:
		linkFault("")
		s.Fault = FaultLocal
		s.Reason += " (blamed on this node)"
	case !allBad:
		linkFault("another transport to the neighbour is healthy")
		s.AltTransport = true
	case path != nil && path.reachable && path.via != "" && path.via != id:
		linkFault(fmt.Sprintf("neighbour reachable through %s", c.name(path.via)))
	case path != nil && !path.reachable && allDown:
		nodeFault(fmt.Sprintf("%s: unreachable (every link down, no route through another neighbour)", name))
	case path != nil && !path.reachable:
		nodeFault(fmt.Sprintf("%s: every link degraded and no route through another neighbour (%s)", name, what))
	default:
		linkFault("")
	}
	return s, true
}

// localSymptom is rule 2's symptom.
func localSymptom(neighbours []string, byPeer map[string][]linkVerdict, bad, down int, c *Config) Symptom {
	s := Symptom{Kind: KindLocal, Fault: FaultLocal, Severity: Critical}
	if down == len(neighbours) {
		s.Reason = fmt.Sprintf("isolated: every link to all %d neighbours down", len(neighbours))
	} else {
		s.Reason = fmt.Sprintf("links to %d of %d neighbours degraded at once: this node is at fault", bad, len(neighbours))
	}
	for _, id := range neighbours {
		for _, v := range byPeer[id] {
			if v.bad {
				for _, e := range v.ev {
					e.Note = strings.TrimSpace(c.name(id) + " " + e.Note)
					s.Evidence = append(s.Evidence, e)
				}
			}
		}
	}
	return s
}

// noPathSymptom reports destinations the routing table has no route to.
func noPathSymptom(m *Monitor, c *Config) (Symptom, bool) {
	var lost []string
	for id, p := range m.paths {
		if !p.reachable {
			lost = append(lost, id)
		}
	}
	if len(lost) == 0 {
		return Symptom{}, false
	}
	slices.Sort(lost)
	total := len(m.paths)
	sev := Degraded
	if float64(len(lost)) >= c.CriticalUnreachable*float64(total) {
		sev = Critical
	}
	var names []string
	for _, id := range lost[:min(len(lost), 3)] {
		names = append(names, c.name(id))
	}
	list := strings.Join(names, ", ")
	if len(lost) > 3 {
		list += ", ..."
	}
	return Symptom{
		Kind: KindNoPath, Fault: FaultLocal, Severity: sev,
		Reason:   fmt.Sprintf("no path to %d of %d peers (%s)", len(lost), total, list),
		Evidence: []Evidence{{Metric: "unreachable", Value: float64(len(lost)), Baseline: float64(total), Note: list}},
	}, true
}

// overloadSymptom reports this node's CPU, queues and drop rate.
func overloadSymptom(m *Monitor, c *Config) (Symptom, bool) {
	n := &m.node
	var ev []Evidence
	var parts []string
	if len(n.cpu.buf) > 0 {
		if v := n.cpu.median(); v >= c.CPUAlarm {
			ev = append(ev, Evidence{Metric: "cpu", Value: v})
			parts = append(parts, "CPU "+pct(v))
		}
	}
	if len(n.queue.buf) > 0 {
		if v := n.queue.median(); v >= c.QueueAlarm {
			ev = append(ev, Evidence{Metric: "queue", Value: v})
			parts = append(parts, "queue "+pct(v)+" full")
		}
	}
	if e, bad, _ := n.rate.eval(m.dropsMetric(), c); bad {
		e.Metric, e.Note = "drops_per_s", n.top
		ev = append(ev, e)
		p := fmt.Sprintf("packet drops %.0f/s (baseline %.0f/s)", e.Value, e.Baseline)
		if n.top != "" {
			p += ", mostly " + n.top
		}
		parts = append(parts, p)
	}
	if len(ev) == 0 {
		return Symptom{}, false
	}
	return Symptom{Kind: KindOverload, Fault: FaultLocal, Severity: Degraded,
		Reason: "overloaded: " + strings.Join(parts, ", "), Evidence: ev}, true
}
