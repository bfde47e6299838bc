package sim

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/x0tta6bl4/x0t/heal"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/linkmon"
	"github.com/x0tta6bl4/x0t/route"
)

// The MAPE-K loop in the simulator. Every node runs a real heal.Loop, fed on
// simulated time with what the node agent feeds it (node/heal.go): one link
// sample per neighbour from its link monitor (up/down, smoothed RTT, jitter,
// loss over the monitor's window), per-neighbour counters (forged or
// malformed adverts from route's events, routing messages its rate limit
// dropped) and the routing table's reach for every destination. Loop.Tick
// runs every HealPeriod with an executor that acts on the simulated router.
//
// What the executor does (and what it can not):
//
//   - Reroute (either scope) raises the advertised metric of the direct link
//     to the peer to AvoidMetric, the largest metric there is; Restore gives
//     it back its measured metric. A node decides only what it sends over its
//     own links, so AvoidNode is the same as AvoidLink here. Raising the
//     metric rather than taking the link down (router.LinkDown, as the node
//     agent does) keeps the link as a last resort: on a bridge, a lossy link
//     still beats none, and a restarted neighbour whose link is still
//     avoided is reachable at once. The link monitor keeps probing an avoided
//     link, so the loop sees when it recovers.
//   - Quarantine takes the link to the peer down at this node and drops all
//     traffic with it from then on, both ways (not lifted: lifting is left to
//     the control plane, as in heal). The peer's link and paths are no longer
//     reported to the loop; its counters still are, so the loop can see that
//     the failures stopped.
//   - Rekey, SwitchTransport and LowerMTU are recorded as executed and do
//     nothing: the simulator has no sessions, transports or MTU. The loop
//     judges them like any remedy, so a verdict on one of them says only that
//     doing nothing did not help; the report says so.
//   - Alert is counted.

// AvoidMetric is the metric a rerouted link is advertised with: the largest
// there is (about 16.7 s of RTT), so every other path is preferred and the
// link is used only where it is the last one left.
const AvoidMetric = route.MaxMetric

// forgeInterval is how often a forging node sends each neighbour a forged
// advert.
const forgeInterval = 500 * time.Millisecond

// healConfig is heal's default configuration with its timings scaled to the
// sampling period: heal assumes a sample about once a second, and counts in
// samples (Window, Recent, MinSamples), so the durations that must span a
// number of samples (ResolveHold 5, VerifyAfter 10, StaleAfter 30,
// OutcomeTimeout 30) scale with the period. With the default 1 s period it is
// DefaultConfig.
func healConfig(self string, period time.Duration, name func(string) string) heal.Config {
	c := heal.DefaultConfig()
	c.Self, c.Name = self, name
	scale := func(d time.Duration) time.Duration {
		return time.Duration(float64(d) * float64(period) / float64(time.Second))
	}
	c.ResolveHold = scale(c.ResolveHold)
	c.VerifyAfter = scale(c.VerifyAfter)
	c.StaleAfter = scale(c.StaleAfter)
	c.OutcomeTimeout = scale(c.OutcomeTimeout)
	return c
}

// healState is a node's loop and what the simulator keeps for it.
type healState struct {
	loop    *heal.Loop
	at      int64    // next tick
	everUp  []bool   // per slot: the link has been up since boot (monitoring starts then)
	avoid   []bool   // per slot: rerouted by the loop
	forged  []uint64 // per slot: forged or malformed adverts from that neighbour
	flooded []uint64 // per slot: routing messages from that neighbour dropped by its rate limit
	known   []bool   // per node: has been a destination of ours since boot
	dests   []int32  // the known destinations
	pathVer uint64   // table version last reported
	pathAt  int64    // when paths were last reported
	maxInc  uint64   // incidents counted as opened
	closed  map[uint64]bool
	judged  map[uint64]bool // actions whose verdict was counted
	quar    map[int32]bool  // neighbours quarantined (by node index)
}

// HealStats is what the MAPE-K loops did in a phase (or the run). Incidents
// are counted in the phase they opened and the phase they closed, action
// verdicts in the phase they were given.
type HealStats struct {
	Opened   int            // incidents opened
	Resolved int            // incidents closed because their symptoms went away
	Ended    int            // incidents closed without a verdict (the subject left)
	Kinds    map[string]int // incidents opened, by their first leading kind
	// Actions by type: issued, and the verdicts given on remedies.
	Actions map[string]*ActionCount
	// At the phase's end: incidents still open, and of those, how many a
	// remedy mitigated (it worked; the fault persists); live nodes by health.
	Open, Mitigated             int
	Healthy, Degraded, Critical int
	// RouterActions counts the loop's actions that changed a router's links
	// or metrics.
	RouterActions int
}

// ActionCount counts one type of action.
type ActionCount struct {
	Issued                       int
	Worked, Failed, Error, Other int // verdicts: Other is timeout or inconclusive
}

func (h *HealStats) action(t heal.ActionType) *ActionCount {
	if h.Actions == nil {
		h.Actions = map[string]*ActionCount{}
	}
	c := h.Actions[string(t)]
	if c == nil {
		c = &ActionCount{}
		h.Actions[string(t)] = c
	}
	return c
}

func (h *HealStats) add(o *HealStats) {
	h.Opened += o.Opened
	h.Resolved += o.Resolved
	h.Ended += o.Ended
	h.RouterActions += o.RouterActions
	for k, v := range o.Kinds {
		if h.Kinds == nil {
			h.Kinds = map[string]int{}
		}
		h.Kinds[k] += v
	}
	for t, c := range o.Actions {
		d := h.action(heal.ActionType(t))
		d.Issued += c.Issued
		d.Worked += c.Worked
		d.Failed += c.Failed
		d.Error += c.Error
		d.Other += c.Other
	}
}

// LossyLink is what happened on a link degraded by a lossy failure: which
// flows crossed it, when the loop rerouted around it, and the delivery of
// those flows' packets before and after.
type LossyLink struct {
	Failure string
	A, B    int
	Loss    float64
	At      time.Duration
	Until   time.Duration // end of the loss (the run's end if it lasts)
	// Flows whose path crossed the link when the loss began, how many of
	// them still crossed it when the loop first rerouted it (routing's own
	// loss-aware metric may have moved some already), and when the loss
	// ended.
	Flows, OnLinkAtReroute, StillOnLink int
	// Reroute is when the loop first rerouted the link (either end), after
	// At; 0 if it did not. RerouteBy is that node.
	Reroute   time.Duration
	RerouteBy int
	// MetricChange is when routing itself, by the measured loss, first
	// changed the link's advertised metric (either end), after At; 0 if it
	// did not before the loop rerouted.
	MetricChange time.Duration
	// Cleared is when none of those flows crossed the link any more
	// (checked every 100 ms), after At, by whichever means; 0 if never.
	Cleared time.Duration
	// Delivery of those flows' packets sent during the loss, before and after
	// the first reroute.
	Before, After Delivery

	edge    int32
	active  bool
	flows   []int32
	metric0 [2]uint32
}

// Delivery counts packets sent and delivered.
type Delivery struct{ Sent, Delivered uint64 }

// Ratio is the fraction delivered (0 when none was sent).
func (d Delivery) Ratio() float64 {
	if d.Sent == 0 {
		return 0
	}
	return float64(d.Delivered) / float64(d.Sent)
}

// Packet window codes (event.pseq) for flows crossing a lossy link.
const (
	winNone = iota
	winBefore
	winAfter
)

func (s *sim) healOn() bool { return !s.o.NoHeal }

// bootHeal gives node i a fresh loop (a restarted node has no memory), with
// its first tick at a random phase of the period.
func (s *sim) bootHeal(i int32) {
	if !s.healOn() {
		return
	}
	n := &s.nodes[i]
	old := n.h
	h := &healState{
		loop:    heal.New(healConfig(s.hex[i], s.o.HealPeriod, s.healName)),
		everUp:  make([]bool, len(n.adj)),
		avoid:   make([]bool, len(n.adj)),
		forged:  make([]uint64, len(n.adj)),
		flooded: make([]uint64, len(n.adj)),
		known:   make([]bool, len(s.nodes)),
		closed:  map[uint64]bool{},
		judged:  map[uint64]bool{},
		quar:    map[int32]bool{},
	}
	if old != nil {
		h.quar = old.quar // a quarantine is kept across restarts (the node persists it)
		for _, v := range old.avoid {
			if v {
				s.avoided-- // a restarted node has forgotten its reroutes
			}
		}
	}
	n.h = h
	h.at = s.now + s.hrng.Int64N(int64(s.o.HealPeriod))
	s.push(event{at: h.at, kind: evHealTick, node: i})
}

func (s *sim) healName(id string) string {
	if i, ok := s.byHex[id]; ok {
		return s.names[i]
	}
	return ""
}

// linkMetric is the metric node i gives its link at slot: the measured one,
// or AvoidMetric while the loop avoids it.
func (s *sim) linkMetric(i, slot int32) uint32 {
	n := &s.nodes[i]
	if s.avoided > 0 && n.h != nil && n.h.avoid[slot] {
		return AvoidMetric
	}
	mon := n.mon[slot]
	return route.Metric(mon.SRTT(), mon.Loss())
}

// quarantined reports whether node i quarantined its neighbour at slot. It
// is on the path of every message, hence the mesh-wide count first.
func (s *sim) quarantined(i, slot int32) bool {
	if s.quarantines == 0 {
		return false
	}
	n := &s.nodes[i]
	return n.h != nil && n.h.quar[n.adj[slot].nbr]
}

// healTick runs one pass of node i's loop.
func (s *sim) healTick(i int32) {
	n := &s.nodes[i]
	h := n.h
	h.at = s.now + int64(s.o.HealPeriod)
	s.push(event{at: h.at, kind: evHealTick, node: i})
	now := s.nowTime()
	o := heal.Observation{Time: now, Links: s.hbuf.links[:0], Peers: s.hbuf.peers[:0], Paths: s.hbuf.paths[:0]}
	for k, a := range n.adj {
		mon := n.mon[k]
		if mon.State() == linkmon.Up {
			h.everUp[k] = true
		}
		if h.quar[a.nbr] {
			// Dropped unopened: only its (frozen) counters are reported.
			o.Peers = append(o.Peers, heal.PeerCounters{Peer: s.hex[a.nbr], ForgedAdverts: h.forged[k], FloodedAdverts: h.flooded[k]})
			continue
		}
		if !h.everUp[k] {
			continue // monitoring of a link starts when it first comes up
		}
		st := mon.Stats()
		o.Links = append(o.Links, heal.LinkSample{Peer: s.hex[a.nbr], Up: st.State == linkmon.Up, RTT: st.SRTT, Jitter: st.Jitter, Loss: st.Loss})
		o.Peers = append(o.Peers, heal.PeerCounters{Peer: s.hex[a.nbr], ForgedAdverts: h.forged[k], FloodedAdverts: h.flooded[k]})
	}
	// Paths: every destination the node has had a route to since boot (the
	// sim's netmap), reported when the table changed and every tenth period
	// otherwise (heal forgets a path not reported for StaleAfter, 30
	// periods): the monitor's state is the same as if they were reported
	// every period, at a fraction of the cost.
	tb := n.r.Table()
	if tb.Version() != h.pathVer || s.now-h.pathAt >= 10*int64(s.o.HealPeriod) {
		h.pathVer, h.pathAt = tb.Version(), s.now
		s.stampGen++
		if len(s.stamp) != len(s.nodes) {
			s.stamp = make([]uint32, len(s.nodes))
		}
		tb.Range(func(dst identity.NodeID, r route.Route) bool {
			j, ok := s.index[dst]
			if !ok || h.quar[j] {
				return true
			}
			if !h.known[j] {
				h.known[j] = true
				h.dests = append(h.dests, j)
			}
			s.stamp[j] = s.stampGen
			via := s.hex[s.index[r.Next]]
			o.Paths = append(o.Paths, heal.PathSample{Dest: s.hex[j], Reachable: true, Via: via})
			return true
		})
		for _, j := range h.dests {
			if s.stamp[j] != s.stampGen && !h.quar[j] {
				o.Paths = append(o.Paths, heal.PathSample{Dest: s.hex[j]})
			}
		}
	}
	h.loop.Observe(o)
	s.hbuf.links, s.hbuf.peers, s.hbuf.paths = o.Links[:0], o.Peers[:0], o.Paths[:0]
	ex := healExec{s: s, i: i}
	for _, a := range h.loop.Tick(now, ex) {
		s.cur().Heal.action(a.Type).Issued++
	}
}

// healExec is node i's heal.Executor.
type healExec struct {
	s *sim
	i int32
}

var errNotNeighbour = errors.New("sim: not a neighbour")

func (e healExec) slot(peer string) (int32, error) {
	j, ok := e.s.byHex[peer]
	if !ok {
		return -1, fmt.Errorf("sim: unknown peer %q", peer)
	}
	for k, a := range e.s.nodes[e.i].adj {
		if a.nbr == j {
			return int32(k), nil
		}
	}
	return -1, fmt.Errorf("%w: %s", errNotNeighbour, e.s.names[j])
}

// setAvoid sets or clears the loop's avoidance of the link at slot and gives
// the router the resulting metric if the link is up.
func (e healExec) setAvoid(peer string, avoid bool) error {
	k, err := e.slot(peer)
	if err != nil {
		return err
	}
	s, i := e.s, e.i
	n := &s.nodes[i]
	if n.h.avoid[k] == avoid {
		return nil
	}
	n.h.avoid[k] = avoid
	if avoid {
		s.avoided++
		s.lossyRerouted(i, k)
	} else {
		s.avoided--
	}
	nbr := s.nodes[n.adj[k].nbr].id
	if _, up := n.r.LinkMetric(nbr); up {
		s.healRouterAction()
		n.r.SetMetric(nbr, s.linkMetric(i, k))
		s.afterRouter(i)
	}
	return nil
}

func (e healExec) Reroute(peer string, _ heal.Scope) error { return e.setAvoid(peer, true) }
func (e healExec) Restore(peer string, _ heal.Scope) error { return e.setAvoid(peer, false) }

// Rekey, SwitchTransport and LowerMTU have nothing to act on in the
// simulator; they are counted as issued (and judged by the loop) only.
func (e healExec) Rekey(string) error                { return nil }
func (e healExec) SwitchTransport(string) error      { return nil }
func (e healExec) LowerMTU(peer string, _ int) error { return nil }

// Quarantine takes the link to peer down here and drops all traffic with it.
func (e healExec) Quarantine(peer string, _ heal.Report) error {
	k, err := e.slot(peer)
	if err != nil {
		return err
	}
	s, i := e.s, e.i
	n := &s.nodes[i]
	a := n.adj[k]
	if !n.h.quar[a.nbr] {
		s.quarantines++
	}
	n.h.quar[a.nbr] = true
	s.edges[a.edge].quar = true
	s.reachChanged()
	nbr := s.nodes[a.nbr].id
	if _, up := n.r.LinkMetric(nbr); up {
		s.healRouterAction()
		n.r.LinkDown(nbr)
		s.afterRouter(i)
	}
	return nil
}

func (e healExec) Alert(heal.Incident) {}

// healRouterAction notes that the loop changed a router in this phase: the
// phase's routing convergence is measured up to the first such action.
func (s *sim) healRouterAction() {
	p := s.cur()
	p.Heal.RouterActions++
	if p.healAt < 0 {
		p.healAt = s.now
	}
}

// collectHeal counts, into phase p, incidents opened and closed and verdicts
// given since the last call, and the health of live nodes at the phase's end.
func (s *sim) collectHeal(p *Phase) {
	if !s.healOn() {
		return
	}
	hs := &p.Heal
	for i := range s.nodes {
		n := &s.nodes[i]
		h := n.h
		if h == nil {
			continue
		}
		if n.alive {
			switch h.loop.Health().State {
			case heal.Healthy:
				hs.Healthy++
			case heal.Degraded:
				hs.Degraded++
			case heal.Critical:
				hs.Critical++
			}
		}
		incs := h.loop.Incidents(0) // newest first
		for _, inc := range incs {
			if inc.ID > h.maxInc {
				hs.Opened++
				if hs.Kinds == nil {
					hs.Kinds = map[string]int{}
				}
				k := inc.Kind
				if len(inc.Kinds) > 0 {
					k = inc.Kinds[0]
				}
				hs.Kinds[string(k)]++
			}
			if inc.Open {
				hs.Open++
				if inc.Mitigated {
					hs.Mitigated++
				}
			} else if !h.closed[inc.ID] {
				h.closed[inc.ID] = true
				if inc.Note == "" {
					hs.Resolved++
				} else {
					hs.Ended++
				}
			}
			for _, r := range inc.Actions {
				if t := r.Action.Type; t == heal.ActAlert || t == heal.ActRestore || h.judged[r.Action.ID] {
					continue
				}
				c := hs.action(r.Action.Type)
				switch r.Result {
				case heal.ResWorked:
					c.Worked++
				case heal.ResFailed:
					c.Failed++
				case heal.ResError:
					c.Error++
				case heal.ResTimeout, heal.ResInconclusive:
					c.Other++
				default:
					continue // not judged yet
				}
				h.judged[r.Action.ID] = true
			}
		}
		if len(incs) > 0 {
			h.maxInc = max(h.maxInc, incs[0].ID)
		}
	}
}

// --- forged adverts ---

func (s *sim) startForging(i int32) {
	n := &s.nodes[i]
	n.forging = true
	n.forgeAt = s.now
	s.push(event{at: s.now, kind: evForge, node: i})
}

// forge sends each neighbour of node i a forged advert: another origin's
// links (claiming a link to i, to attract traffic), with a fresh sequence
// number, signed with i's own key, which is all a misbehaving node can do.
// Its neighbours receive it inside i's authenticated link session, so they
// attribute the bad signature to i.
func (s *sim) forge(i int32) {
	n := &s.nodes[i]
	n.forgeAt = s.now + int64(forgeInterval)
	s.push(event{at: n.forgeAt, kind: evForge, node: i})
	if !n.alive {
		return
	}
	for k := range n.adj {
		n.forgeN++
		x := int32((int64(i) + 1 + int64(n.forgeN%uint64(len(s.nodes)-1))) % int64(len(s.nodes)))
		body, err := route.EncodeLSABody(route.LSA{
			Origin: s.nodes[x].id,
			Seq:    uint64(s.nowTime().UnixMicro()) + 1<<40 + n.forgeN,
			Links:  []route.Link{{Neighbour: n.id, Metric: 1}},
		})
		if err != nil {
			panic("sim: forged advert does not encode: " + err.Error())
		}
		if s.edges[n.adj[k].edge].quar {
			s.rep.ForgedBlocked++ // the neighbour quarantined us: dropped unopened
			continue
		}
		msg := append(body, n.key.Sign(route.SignLabel, body)...)
		s.rep.ForgedSent++
		s.send(i, int32(k), msg, &s.cur().Routing)
	}
}

// --- lossy links ---

// startLossy degrades a link: from now it loses f.Loss of the messages
// crossing it. It records which flows cross it.
func (s *sim) startLossy(fi int, f Failure) (int32, bool) {
	e := int32(-1)
	if f.Busy {
		e = s.busiestEdge()
	} else {
		e = s.findEdge(int32(f.A), int32(f.B))
	}
	if e < 0 {
		return -1, false
	}
	ed := &s.edges[e]
	ed.loss = f.Loss
	L := &LossyLink{Failure: f.String(), A: int(ed.a), B: int(ed.b), Loss: f.Loss, At: time.Duration(s.now), edge: e, active: true, RerouteBy: -1}
	for k := range s.flows {
		if s.pathUses(s.flows[k].src, s.flows[k].dst, e) {
			L.flows = append(L.flows, int32(k))
			s.flows[k].lossy = int32(len(s.rep.Lossy))
		}
	}
	L.Flows = len(L.flows)
	for end, x := range [2]int32{ed.a, ed.b} {
		y := ed.b
		if end == 1 {
			y = ed.a
		}
		L.metric0[end], _ = s.nodes[x].r.LinkMetric(s.nodes[y].id)
	}
	s.rep.Lossy = append(s.rep.Lossy, *L)
	s.lossyOf[fi] = len(s.rep.Lossy) - 1
	s.push(event{at: s.now + int64(lossyCheck), kind: evLossyCheck, aux: int32(len(s.rep.Lossy) - 1)})
	return e, true
}

const lossyCheck = 100 * time.Millisecond

// checkLossy notes when the flows that crossed lossy link li have all left it.
func (s *sim) checkLossy(li int) {
	L := &s.rep.Lossy[li]
	if !L.active || L.Cleared != 0 {
		return
	}
	for _, k := range L.flows {
		if s.pathUses(s.flows[k].src, s.flows[k].dst, L.edge) {
			s.push(event{at: s.now + int64(lossyCheck), kind: evLossyCheck, aux: int32(li)})
			return
		}
	}
	L.Cleared = time.Duration(s.now) - L.At
}

// endLossy ends a lossy failure (at its restore, or at the run's end).
func (s *sim) endLossy(li int) {
	L := &s.rep.Lossy[li]
	if !L.active {
		return
	}
	L.active = false
	L.Until = time.Duration(s.now)
	s.edges[L.edge].loss = 0
	for _, k := range L.flows {
		if s.pathUses(s.flows[k].src, s.flows[k].dst, L.edge) {
			L.StillOnLink++
		}
		if s.flows[k].lossy == int32(li) {
			s.flows[k].lossy = -1
		}
	}
}

// lossyRerouted notes the loop rerouting node i's link at slot, if it is a
// lossy one.
func (s *sim) lossyRerouted(i, slot int32) {
	e := s.nodes[i].adj[slot].edge
	for li := range s.rep.Lossy {
		L := &s.rep.Lossy[li]
		if L.active && L.edge == e && L.Reroute == 0 {
			L.Reroute = time.Duration(s.now) - L.At
			L.RerouteBy = int(i)
			for _, k := range L.flows {
				if s.pathUses(s.flows[k].src, s.flows[k].dst, e) {
					L.OnLinkAtReroute++
				}
			}
		}
	}
}

// lossyMetric notes routing changing the advertised metric of a lossy link
// by itself (node i's end at slot).
func (s *sim) lossyMetric(i, slot int32) {
	if len(s.rep.Lossy) == 0 {
		return
	}
	e := s.nodes[i].adj[slot].edge
	if s.edges[e].loss == 0 {
		return
	}
	for li := range s.rep.Lossy {
		L := &s.rep.Lossy[li]
		if !L.active || L.edge != e || L.MetricChange != 0 || L.Reroute != 0 {
			continue
		}
		end := 0
		if i == s.edges[e].b {
			end = 1
		}
		m, ok := s.nodes[i].r.LinkMetric(s.nodes[s.nodes[i].adj[slot].nbr].id)
		switch {
		case !ok:
		case L.metric0[end] == 0:
			L.metric0[end] = m // the link was down when the loss began
		case m != L.metric0[end]:
			L.MetricChange = time.Duration(s.now) - L.At
		}
	}
}

// lossyWindow classifies a packet of flow f sent now: not on a lossy link,
// or sent before or after the loop rerouted it.
func (s *sim) lossyWindow(f *flow) int32 {
	if f.lossy < 0 {
		return winNone
	}
	L := &s.rep.Lossy[f.lossy]
	if !L.active {
		return winNone
	}
	if L.Reroute == 0 {
		L.Before.Sent++
		return winBefore
	}
	L.After.Sent++
	return winAfter
}

func (s *sim) lossyDelivered(f *flow, win int32) {
	if win == winNone || f.lossy < 0 {
		return
	}
	L := &s.rep.Lossy[f.lossy]
	if win == winBefore {
		L.Before.Delivered++
	} else {
		L.After.Delivered++
	}
}

// busiestEdge is the live link the most flows' paths cross now (ties: the
// lowest index).
func (s *sim) busiestEdge() int32 {
	count := make([]int, len(s.edges))
	for k := range s.flows {
		for _, e := range s.pathEdges(s.flows[k].src, s.flows[k].dst) {
			count[e]++
		}
	}
	best := int32(-1)
	for e, c := range count {
		if c > 0 && (best < 0 || c > count[best]) {
			best = int32(e)
		}
	}
	return best
}

func (s *sim) pathUses(src, dst, e int32) bool {
	return slices.Contains(s.pathEdges(src, dst), e)
}

// pathEdges returns the links a packet from src to dst crosses now, as the
// data plane forwards it (nil if it does not arrive).
func (s *sim) pathEdges(src, dst int32) []int32 {
	var out []int32
	if _, _, ok, _ := s.walk(src, dst, nil, func(e int32) { out = append(out, e) }); !ok {
		return nil
	}
	return out
}
