package sim

import (
	"fmt"
	"io"
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
	NoRoute  uint64 // no usable next hop (no route, or both next hops down)
	HopLimit uint64
	LinkDown uint64 // sent onto a cut link whose failure was not yet detected
	DeadNode uint64 // arrived at a crashed node
	Loss     uint64 // random link loss
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
	// after its start; Converged says the tables at the end of the phase were
	// verified to match shortest paths on the surviving topology (Wrong
	// routes: 0) and every link monitor agreed with the cable (Undetected: 0).
	Convergence time.Duration
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

	start   int64
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
	Warnings     []string
	Events       uint64 // simulator events processed
	Setup, Wall  time.Duration
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
	p("\n%-34s %9s %5s %6s %10s %9s %9s %9s %8s %8s\n", "phase", "converge", "ok", "wrong", "detect", "routing", "delivery", "disrupt", "gap-med", "gap-max")
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
		p("%-34s %9s %5s %6d %10s %9s %9s %9d %8s %8s\n", ev, ms(ph.Convergence), ok, ph.Wrong+ph.Undetected, det,
			fmt.Sprintf("%.0fB/s", float64(ph.Routing.Bytes)/float64(o.Nodes)/max(ph.Duration.Seconds(), 1e-9)),
			ratio(ph.Data.DeliveredReachable, ph.Data.SentReachable), ph.Disrupted, ms(ph.GapMedian), ms(ph.GapMax))
	}
	p("  (converge: last routing-table change after the event, verified against shortest paths at the phase's end;\n")
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
	p("data drops: no route %d, hop limit %d, onto an undetected dead link %d, at a dead node %d, link loss %d\n", d.NoRoute, d.HopLimit, d.LinkDown, d.DeadNode, d.Loss)
	if len(r.RouterEvents) > 0 || r.Errors > 0 {
		p("router events %v; rejected messages %d\n", r.RouterEvents, r.Errors)
	}
	for _, w := range r.Warnings {
		p("warning: %s\n", w)
	}
	return cw.n, cw.err
}

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
