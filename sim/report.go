package sim

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Traffic counts messages and bytes put on links.
type Traffic struct {
	Msgs, Bytes uint64
}

// DataCount counts data packets by the phase they were sent in. The
// Reachable counts are for packets whose source had a path to the
// destination, within the hop limit, on the surviving topology when sent.
type DataCount struct {
	Sent, Delivered                   uint64
	SentReachable, DeliveredReachable uint64
}

// DataDrops counts data packets lost by reason.
type DataDrops struct {
	NoRoute     uint64 // no usable next hop (no route, or both next hops down)
	HopLimit    uint64
	LinkDown    uint64 // sent onto a cut link whose failure was not yet detected
	DeadNode    uint64 // arrived at a crashed node
	Loss        uint64 // random link loss (mesh-wide or a lossy link)
	Quarantined uint64 // sent onto a link whose other end quarantined the sender
}

// Stretch compares the paths the routing tables give with least-delay paths.
type Stretch struct {
	Pairs     int
	Mean, Max float64 // delay of the routed path / least delay
	Optimal   int     // pairs routed on a least-delay path
	Loops     int     // pairs whose packets would loop (must be 0)
	Unrouted  int     // pairs with a path but no route
}

// Phase is the time from start or from one failure (or restore) to the next.
type Phase struct {
	At       time.Duration
	Event    string
	Duration time.Duration
	// Convergence is the time of the last routing-table change in the phase
	// after its start, before the MAPE-K loop first changed a router in the
	// phase (the routing protocol's own convergence); Settled is the last
	// change of all, including those the loop's actions caused (rerouting a
	// link, restoring it). Converged says the tables at the end of the phase
	// were verified to match shortest paths on the surviving topology, with
	// the metrics the routers advertise (Wrong routes: 0), and every link
	// monitor agreed with the cable (Undetected: 0).
	Convergence time.Duration
	Settled     time.Duration
	Converged   bool
	Wrong       int
	Undetected  int
	// Detections counts link-down events; DetectMedian/Max is the time from
	// the failure to each end of each failed link declaring it down.
	Detections              int
	DetectMedian, DetectMax time.Duration
	Routing                 Traffic // routing messages sent in the phase
	Data                    DataCount
	// Disrupted flows saw a gap of more than 5 packet intervals between
	// received packets; GapMedian/GapMax are over their longest gaps.
	Disrupted         int
	GapMedian, GapMax time.Duration
	Stretch           Stretch
	// Heal is what the nodes' MAPE-K loops did in the phase.
	Heal HealStats

	start   int64
	healAt  int64 // when the loop first changed a router in the phase; -1: not yet
	gaps    []int64
	reach   []bool
	gapList []int64
}

// Report is the outcome of a run. It prints itself.
type Report struct {
	Options Options
	Links   int
	Phases  []Phase
	Routing Traffic // all routing messages (adverts, summaries, acks)
	Probe   Traffic // link monitor probes and replies
	Data    DataCount
	Drops   DataDrops
	// FailoverGaps summarizes the longest gap of every flow disrupted by a
	// failure (not by a restore): how long the data plane lost traffic.
	FailoverGaps struct {
		Flows            int
		Median, P90, Max time.Duration
	}
	LinkDowns    int    // link-down decisions by monitors, including false ones on lossy links
	Signed       uint64 // adverts signed (real hybrid signatures)
	Verified     uint64 // signature verifications done
	CacheHits    uint64 // verifications answered by the shared cache
	Accepted     uint64 // adverts accepted, over all routers
	Duplicates   uint64
	Retransmits  uint64
	SPFRuns      uint64
	RouterEvents map[string]uint64
	Errors       uint64 // messages a state machine rejected (none expected)
	// Heal sums the phases' MAPE-K figures; its Open, Mitigated and health
	// counts are those at the run's end.
	Heal HealStats
	// Lossy describes each lossy link: the flows it hurt and what the
	// loop's reroute did for them.
	Lossy []LossyLink
	// ForgedSent counts forged adverts sent by forging nodes (ForgedBlocked:
	// not sent, the neighbour had quarantined the forger), ForgedRejected
	// those their neighbours' routers verified and rejected as forged (the
	// rest were lost, or dropped unverified once the sender had no strikes
	// left).
	ForgedSent, ForgedBlocked, ForgedRejected uint64
	Warnings                                  []string
	Events                                    uint64 // simulator events processed
	Setup, Wall                               time.Duration
}

func (s *sim) finish(wall time.Duration) {
	r := &s.rep
	r.Options = s.o
	r.Options.check = nil
	r.Links = len(s.edges)
	r.Phases = s.phases
	r.Events = s.events
	r.Drops = s.drops
	r.Wall = wall
	r.Verified, r.CacheHits = s.cache.misses, s.cache.hits
	for _, p := range s.phases {
		r.LinkDowns += p.Detections
		r.Routing.Msgs += p.Routing.Msgs
		r.Routing.Bytes += p.Routing.Bytes
		r.Data.Sent += p.Data.Sent
		r.Data.Delivered += p.Data.Delivered
		r.Data.SentReachable += p.Data.SentReachable
		r.Data.DeliveredReachable += p.Data.DeliveredReachable
	}
	var gaps []int64
	for _, p := range s.phases[1:] {
		if !strings.HasPrefix(p.Event, "restore") {
			gaps = append(gaps, p.gapList...)
		}
	}
	if len(gaps) > 0 {
		gaps = sortedInt64(gaps)
		g := &r.FailoverGaps
		g.Flows = len(gaps)
		g.Median, g.P90, g.Max = time.Duration(gaps[len(gaps)/2]), time.Duration(gaps[len(gaps)*9/10]), time.Duration(gaps[len(gaps)-1])
	}
	for k := range s.phases {
		r.Heal.add(&s.phases[k].Heal)
	}
	if n := len(s.phases); n > 0 {
		last := s.phases[n-1].Heal
		r.Heal.Open, r.Heal.Mitigated = last.Open, last.Mitigated
		r.Heal.Healthy, r.Heal.Degraded, r.Heal.Critical = last.Healthy, last.Degraded, last.Critical
	}
	for i := range s.nodes {
		st := s.nodes[i].r.Stats()
		r.Signed += st.Originated
		r.Accepted += st.Accepted
		r.Duplicates += st.Duplicate
		r.Retransmits += st.Retransmits
		r.SPFRuns += st.SPFRuns
	}
}

// Converged reports whether every phase ended with verified tables.
func (r *Report) Converged() bool {
	for _, p := range r.Phases {
		if !p.Converged {
			return false
		}
	}
	return true
}

func ratio(a, b uint64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.4f", float64(a)/float64(b))
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
}

// String renders the report as text.
func (r *Report) String() string {
	var b strings.Builder
	r.WriteTo(&b)
	return b.String()
}

// WriteTo prints the report.
func (r *Report) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	o := r.Options
	p := func(format string, a ...any) { fmt.Fprintf(cw, format, a...) }
	secs := o.Duration.Seconds()
	perNode := func(t Traffic) string {
		return fmt.Sprintf("%.1f msg/s, %.0f B/s", float64(t.Msgs)/float64(o.Nodes)/secs, float64(t.Bytes)/float64(o.Nodes)/secs)
	}
	p("x0t sim: %d nodes, %s topology, %d links, seed %d, %v simulated in %v (setup %v, %d events)\n",
		o.Nodes, o.Topology, r.Links, o.Seed, o.Duration, r.Wall.Round(time.Millisecond), r.Setup.Round(time.Millisecond), r.Events)
	p("links: delay %v mean, jitter %v, loss %.3f; probes every %v; flows %d × 1 packet/%v from %v, hop limit %d\n",
		o.Delay, o.Jitter, o.Loss, orDefault(o.Probe, 50*time.Millisecond), o.Flows, o.PacketInterval, o.TrafficStart, o.HopLimit)
	p("\n%-34s %9s %8s %5s %6s %10s %9s %9s %9s %8s %8s\n", "phase", "converge", "settled", "ok", "wrong", "detect", "routing", "delivery", "disrupt", "gap-med", "gap-max")
	for _, ph := range r.Phases {
		ok := "yes"
		if !ph.Converged {
			ok = "NO"
		}
		det := "-"
		if ph.DetectMax > 0 {
			det = ms(ph.DetectMedian) + "/" + ms(ph.DetectMax)
		}
		ev := fmt.Sprintf("%v %s", ph.At.Round(time.Millisecond), ph.Event)
		if len(ev) > 34 {
			ev = ev[:31] + "..."
		}
		settled := "-"
		if ph.Settled > ph.Convergence {
			settled = dur(ph.Settled)
		}
		p("%-34s %9s %8s %5s %6d %10s %9s %9s %9d %8s %8s\n", ev, ms(ph.Convergence), settled, ok, ph.Wrong+ph.Undetected, det,
			fmt.Sprintf("%.0fB/s", float64(ph.Routing.Bytes)/float64(o.Nodes)/max(ph.Duration.Seconds(), 1e-9)),
			ratio(ph.Data.DeliveredReachable, ph.Data.SentReachable), ph.Disrupted, ms(ph.GapMedian), ms(ph.GapMax))
	}
	p("  (converge: last routing-table change after the event (before the MAPE-K loop acted on a router), verified\n")
	p("   against shortest paths at the phase's end; settled: last change including those the loop's actions caused;\n")
	p("   detect: median/max time for link ends to declare a failed link down; routing: bytes per node per second;\n")
	p("   delivery: of data packets sent while a path existed; gap: longest silence of disrupted flows)\n")
	p("\ncontrol traffic per node: routing %s; link probes %s\n", perNode(r.Routing), perNode(r.Probe))
	p("link monitors: %d link ends declared down\n", r.LinkDowns)
	p("signatures: %d adverts signed, %d verified, %d verifications answered by the shared cache\n", r.Signed, r.Verified, r.CacheHits)
	p("adverts: %d accepted, %d duplicates, %d retransmitted; %d SPF runs\n", r.Accepted, r.Duplicates, r.Retransmits, r.SPFRuns)
	var st Stretch
	var sum float64
	for _, ph := range r.Phases {
		st.Pairs += ph.Stretch.Pairs
		st.Optimal += ph.Stretch.Optimal
		st.Loops += ph.Stretch.Loops
		st.Unrouted += ph.Stretch.Unrouted
		st.Max = max(st.Max, ph.Stretch.Max)
		sum += ph.Stretch.Mean * float64(ph.Stretch.Pairs-ph.Stretch.Loops-ph.Stretch.Unrouted)
	}
	if n := st.Pairs - st.Loops - st.Unrouted; n > 0 {
		st.Mean = sum / float64(n)
	}
	p("path stretch (delay of routed path / least delay, %d pairs at phase ends): mean %.3f, max %.3f, optimal %.1f%%, loops %d, unrouted %d\n",
		st.Pairs, st.Mean, st.Max, 100*float64(st.Optimal)/float64(max(st.Pairs, 1)), st.Loops, st.Unrouted)
	p("data: %d sent, %d delivered (%s); with a path when sent: %d sent, %d delivered (%s)\n",
		r.Data.Sent, r.Data.Delivered, ratio(r.Data.Delivered, r.Data.Sent), r.Data.SentReachable, r.Data.DeliveredReachable, ratio(r.Data.DeliveredReachable, r.Data.SentReachable))
	if g := r.FailoverGaps; g.Flows > 0 {
		p("failover: %d flows disrupted by failures; longest gap per flow: median %s, p90 %s, max %s\n", g.Flows, ms(g.Median), ms(g.P90), ms(g.Max))
	}
	d := r.Drops
	p("data drops: no route %d, hop limit %d, onto an undetected dead link %d, at a dead node %d, link loss %d, quarantined %d\n", d.NoRoute, d.HopLimit, d.LinkDown, d.DeadNode, d.Loss, d.Quarantined)
	if len(r.RouterEvents) > 0 || r.Errors > 0 {
		p("router events %v; rejected messages %d\n", r.RouterEvents, r.Errors)
	}
	if !o.NoHeal {
		r.writeHeal(p)
	}
	for _, w := range r.Warnings {
		p("warning: %s\n", w)
	}
	return cw.n, cw.err
}

// writeHeal prints the MAPE-K section.
func (r *Report) writeHeal(p func(string, ...any)) {
	o := r.Options
	p("\nMAPE-K loop (heal) on every node every %v, heal's defaults with timings scaled to that period.\n", o.HealPeriod)
	p("  reroute: the link's advertised metric goes to the maximum (a last resort); restore: back to the measured one;\n")
	p("  quarantine: the link is taken down at that end and the peer's traffic dropped; rekey, switch-transport and\n")
	p("  lower-mtu are recorded as executed but do nothing here: the simulator has no sessions, transports or MTU.\n")
	p("%-34s %7s %8s %12s %13s  %s\n", "phase", "opened", "resolved", "open(mitig.)", "health h/d/c", "incidents opened by kind; actions issued (worked/failed verdicts)")
	for _, ph := range r.Phases {
		h := &ph.Heal
		ev := fmt.Sprintf("%v %s", ph.At.Round(time.Millisecond), ph.Event)
		if len(ev) > 34 {
			ev = ev[:31] + "..."
		}
		p("%-34s %7d %8d %12s %13s  %s\n", ev, h.Opened, h.Resolved, fmt.Sprintf("%d(%d)", h.Open, h.Mitigated),
			fmt.Sprintf("%d/%d/%d", h.Healthy, h.Degraded, h.Critical), h.summary())
	}
	t := &r.Heal
	p("MAPE-K total: %d incidents opened, %d resolved (symptoms gone), %d ended unjudged (subject left); at the end %d open, %d of them mitigated; nodes healthy/degraded/critical %d/%d/%d\n",
		t.Opened, t.Resolved, t.Ended, t.Open, t.Mitigated, t.Healthy, t.Degraded, t.Critical)
	if len(t.Actions) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(t.Actions)) {
			c := t.Actions[k]
			s := fmt.Sprintf("%s %d", k, c.Issued)
			if k != "alert" && k != "restore" {
				s += fmt.Sprintf(" (worked %d, failed %d", c.Worked, c.Failed)
				if c.Error > 0 {
					s += fmt.Sprintf(", error %d", c.Error)
				}
				if c.Other > 0 {
					s += fmt.Sprintf(", timeout/inconclusive %d", c.Other)
				}
				if w := c.Issued - c.Worked - c.Failed - c.Error - c.Other; w > 0 {
					s += fmt.Sprintf(", awaiting a verdict %d", w)
				}
				if k == "rekey" || k == "switch-transport" || k == "lower-mtu" {
					s += ", a no-op here"
				}
				s += ")"
			}
			parts = append(parts, s)
		}
		p("MAPE-K actions: %s\n", strings.Join(parts, "; "))
	}
	if r.ForgedSent > 0 {
		p("forged adverts: %d sent by forging nodes (%d more blocked by quarantines), %d verified and rejected as forged (the rest dropped unverified: no strikes left)\n",
			r.ForgedSent, r.ForgedBlocked, r.ForgedRejected)
	}
	for _, L := range r.Lossy {
		p("lossy link %d-%d (%s of messages lost each way) %v-%v: %d flows crossed it", L.A, L.B, pctf(L.Loss), L.At, L.Until.Round(time.Millisecond), L.Flows)
		if L.Flows == 0 {
			if L.Reroute > 0 {
				p("; the loop rerouted it %s after the loss began (n%d)", dur(L.Reroute), L.RerouteBy)
			}
			p("\n")
			continue
		}
		if L.Reroute > 0 {
			p("; the loop first rerouted it %s after the loss began (n%d), when %d of them still crossed it", dur(L.Reroute), L.RerouteBy, L.OnLinkAtReroute)
		} else {
			p("; the loop did not reroute it")
		}
		if L.MetricChange > 0 {
			p("; routing's own metric (measured loss) changed first, after %s", dur(L.MetricChange))
		}
		if L.Cleared > 0 {
			p("; no flow crossed it any more after %s", dur(L.Cleared))
		}
		p("\n  those flows' delivery during the loss: %s before the reroute (%d packets), %s after (%d packets); still on the link when the loss ended: %d of %d\n",
			ratio(L.Before.Delivered, L.Before.Sent), L.Before.Sent, ratio(L.After.Delivered, L.After.Sent), L.After.Sent, L.StillOnLink, L.Flows)
	}
}

// summary is one phase's kinds and actions.
func (h *HealStats) summary() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(h.Kinds)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, h.Kinds[k]))
	}
	s := strings.Join(parts, ", ")
	parts = parts[:0]
	for _, k := range slices.Sorted(maps.Keys(h.Actions)) {
		c := h.Actions[k]
		if c.Issued == 0 && c.Worked+c.Failed == 0 {
			continue
		}
		x := fmt.Sprintf("%s %d", k, c.Issued)
		if c.Worked+c.Failed > 0 {
			x += fmt.Sprintf(" (%d/%d)", c.Worked, c.Failed)
		}
		parts = append(parts, x)
	}
	if len(parts) > 0 {
		if s != "" {
			s += "; "
		}
		s += strings.Join(parts, ", ")
	}
	if s == "" {
		return "-"
	}
	return s
}

func dur(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

func pctf(x float64) string { return fmt.Sprintf("%.0f%%", 100*x) }

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
	return n, err
}
