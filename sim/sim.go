// Package sim is a discrete-event simulator of an x0t mesh: N instances of the
// real route.Router and linkmon.Link, exchanging the real message encodings
// with real hybrid signatures, over simulated links with delay, jitter, loss
// and cuts, on simulated time. There are no sleeps and no goroutines: a run is
// a loop over a priority queue of events, and the same Options give the same
// Report.
//
// It measures what docs/routing.md promises: convergence after start and
// after each failure, control traffic, path stretch, failure detection, and
// the delivery of data packets forwarded hop by hop through the routers'
// tables (using the alternate next hop when a link is down), as the data plane
// does.
//
// Every node also runs the real MAPE-K loop (heal.Loop), fed with its link
// monitors' samples, its router's reports and its routing table, whose
// actions act on the simulated router (heal.go).
package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/x0tta6bl4/x0t/heal"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/linkmon"
	"github.com/x0tta6bl4/x0t/route"
)

// Options configure a run. Zero values take the defaults in brackets.
type Options struct {
	Nodes    int    // [100]
	Topology string // line, grid or random [random]
	Seed     uint64
	// Failures to inject; see ParseFailures for the spec syntax.
	Failures []Failure
	// Duration of simulated time [the last failure or restore + Settle, at least 20 s].
	Duration time.Duration
	Settle   time.Duration // time after the last failure [10s]
	Delay    time.Duration // mean one-way link delay [2ms]
	Jitter   time.Duration // extra per-message delay, uniform in [0, Jitter) [Delay/10]
	Loss     float64       // per-message loss on every link [0]
	Degree   float64       // mean degree of the random topology [5]
	// Flows is the number of data flows between random node pairs, each
	// sending a packet every PacketInterval from TrafficStart [16].
	Flows          int
	PacketInterval time.Duration // [10ms]
	TrafficStart   time.Duration // [5s, or the first failure minus 2 s if earlier]
	HopLimit       int           // forwarding hop limit of data packets [255]
	// Refresh overrides route.Config.RefreshInterval (aging in long runs).
	Refresh time.Duration
	// Probe overrides linkmon.Config.Interval.
	Probe time.Duration
	// StretchSources is the number of random sources from which path
	// stretch is measured to every destination at the end of each phase [32].
	StretchSources int
	// NoHeal turns the MAPE-K loops off: routing and link monitoring alone.
	NoHeal bool
	// HealPeriod is the period of every node's MAPE-K loop [1s]; heal's
	// timings scale with it (healConfig).
	HealPeriod time.Duration

	check func(*sim, *Phase) // tests: called at the end of every phase
}

func (o *Options) defaults() error {
	if o.Nodes == 0 {
		o.Nodes = 100
	}
	if o.Nodes < 2 {
		return fmt.Errorf("sim: need at least 2 nodes, got %d", o.Nodes)
	}
	if o.Topology == "" {
		o.Topology = "random"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Settle, 10*time.Second)
	def(&o.Delay, 2*time.Millisecond)
	if o.Jitter <= 0 {
		o.Jitter = o.Delay / 10
	}
	if o.Degree <= 0 {
		o.Degree = 5
	}
	if o.Flows <= 0 {
		o.Flows = 16
	}
	def(&o.PacketInterval, 10*time.Millisecond)
	def(&o.HealPeriod, time.Second)
	if o.HopLimit <= 0 {
		o.HopLimit = 255
	}
	if o.StretchSources <= 0 {
		o.StretchSources = 32
	}
	if o.Loss < 0 || o.Loss >= 1 {
		return fmt.Errorf("sim: loss %v out of [0, 1)", o.Loss)
	}
	last := time.Duration(0)
	for _, f := range o.Failures {
		last = max(last, f.At, f.Until)
		pair := f.Kind == "link" || f.Kind == "lossy" && !f.Busy
		if pair && (f.A >= o.Nodes || f.B >= o.Nodes) || (f.Kind == "node" || f.Kind == "forge") && f.A >= o.Nodes {
			return fmt.Errorf("sim: failure %v names a node beyond %d", f, o.Nodes-1)
		}
	}
	if o.Duration <= 0 {
		o.Duration = max(20*time.Second, last+o.Settle)
	}
	if o.TrafficStart <= 0 {
		o.TrafficStart = 5 * time.Second
		for _, f := range o.Failures {
			o.TrafficStart = min(o.TrafficStart, max(f.At-2*time.Second, time.Second))
		}
	}
	return nil
}

// Event kinds in the queue.
const (
	evMsg  = iota + 1 // a control message arrives
	evData            // a data packet arrives
	evRouterTick
	evMonTick
	evFailure
	evFlowSend
	evHealTick   // a node's MAPE-K loop runs
	evForge      // a forging node sends forged adverts
	evLossyCheck // are the flows off a lossy link yet?
)

type event struct {
	at    int64
	seq   uint64
	msg   []byte
	node  int32 // where it happens
	slot  int32 // adjacency slot at node (the link it arrived on)
	aux   int32 // failure index; flow index
	pseq  int32 // data: lossy-link window it was sent in (winNone, winBefore, winAfter)
	ttl   int16 // data: hops left
	ph    int16 // data: phase it was sent in
	kind  uint8
	reach bool // data: a path existed when it was sent
}

type adj struct {
	nbr  int32 // node index
	edge int32
	back int32 // our slot in nbr's adjacency
}

type node struct {
	id    identity.NodeID
	key   *identity.SigningKey
	r     *route.Router
	adj   []adj
	mon   []*linkmon.Link
	monAt []int64
	rAt   int64
	alive bool
	ver   uint64 // table version last seen
	h     *healState

	forging bool // sends forged adverts (a forge failure)
	forgeAt int64
	forgeN  uint64
}

type flow struct {
	src, dst  int32
	lastRecv  int64
	maxGap    int64
	reachable bool  // in the current phase: a path exists within the hop limit
	lossy     int32 // index in Report.Lossy of the lossy link its path crossed; -1: none
}

type sim struct {
	o     Options
	rng   *rand.Rand
	now   int64
	epoch time.Time
	seq   uint64
	q     []hent
	slab  []event
	free  []int32
	nodes []node
	edges []edge
	index map[identity.NodeID]int32
	cache *verifyCache
	flows []flow

	phases      []Phase
	lastChange  int64
	lastRouting int64              // last table change before the loop first acted on a router in the phase
	detectWant  map[[2]int32]int64 // (node, slot) → when its link failed
	detect      []int64
	restores    []restore

	// The MAPE-K loops: their own random source (so that runs without them
	// draw the same numbers as before they existed), node IDs as heal names
	// them, display names, scratch space.
	hrng  *rand.Rand
	hex   []string
	byHex map[string]int32
	names []string
	hbuf  struct {
		links []heal.LinkSample
		peers []heal.PeerCounters
		paths []heal.PathSample
	}
	stamp       []uint32
	stampGen    uint32
	quarantines int   // neighbours quarantined, over all nodes
	avoided     int   // links avoided by the loops, over all nodes
	lossyOf     []int // per failure: its index in rep.Lossy (lossy failures)

	events   uint64
	drops    DataDrops
	rep      Report
	scratch  []int32
	visit    []uint32
	visitGen uint32
}

type restore struct {
	at    time.Duration
	edges []int32
	nodes []int32
}

// Run simulates a mesh and reports what happened. It stops early with the
// context's error.
func Run(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	if err := o.defaults(); err != nil {
		return nil, err
	}
	s := &sim{
		o:          o,
		rng:        rand.New(rand.NewPCG(o.Seed, 0x5eed)),
		hrng:       rand.New(rand.NewPCG(o.Seed, 0x4ea1)),
		epoch:      time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		index:      make(map[identity.NodeID]int32, o.Nodes),
		detectWant: map[[2]int32]int64{},
	}
	s.rep.RouterEvents = map[string]uint64{}
	var err error
	if s.edges, err = buildTopology(o.Topology, o.Nodes, o.Degree, o.Delay, s.rng); err != nil {
		return nil, err
	}
	if err := s.setup(); err != nil {
		return nil, err
	}
	s.rep.Setup = time.Since(start)
	end := int64(o.Duration)
	for len(s.q) > 0 {
		if s.events&0xffff == 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("sim: stopped at %v of simulated time: %w", time.Duration(s.now), ctx.Err())
		}
		ev := s.pop()
		if ev.at > end {
			break
		}
		s.now = ev.at
		s.events++
		s.handle(&ev)
	}
	s.now = end
	for li := range s.rep.Lossy {
		s.endLossy(li)
	}
	s.endPhase()
	s.finish(time.Since(start))
	return &s.rep, nil
}

func (s *sim) nowTime() time.Time { return s.epoch.Add(time.Duration(s.now)) }

// cur is the current phase.
func (s *sim) cur() *Phase { return &s.phases[len(s.phases)-1] }

func (s *sim) setup() error {
	o := s.o
	s.nodes = make([]node, o.Nodes)
	s.cache = newVerifyCache()
	for i := range s.nodes {
		var edSeed, mlSeed [32]byte
		for j := 0; j < 4; j++ {
			putU64(edSeed[j*8:], s.rng.Uint64())
			putU64(mlSeed[j*8:], s.rng.Uint64())
		}
		k, err := identity.NewSigningKey(edSeed[:], mlSeed[:])
		if err != nil {
			return fmt.Errorf("sim: key for node %d: %w", i, err)
		}
		n := &s.nodes[i]
		n.key = k
		h := sha256.Sum256(k.Public().Bytes())
		copy(n.id[:], h[:16])
		s.index[n.id] = int32(i)
		s.cache.keys = append(s.cache.keys, k.Public())
	}
	s.hex = make([]string, o.Nodes)
	s.names = make([]string, o.Nodes)
	s.byHex = make(map[string]int32, o.Nodes)
	for i := range s.nodes {
		s.hex[i] = s.nodes[i].id.String()
		s.names[i] = fmt.Sprintf("n%d", i)
		s.byHex[s.hex[i]] = int32(i)
	}
	s.cache.index = s.index
	for e, ed := range s.edges {
		a, b := &s.nodes[ed.a], &s.nodes[ed.b]
		a.adj = append(a.adj, adj{nbr: ed.b, edge: int32(e), back: int32(len(b.adj))})
		b.adj = append(b.adj, adj{nbr: ed.a, edge: int32(e), back: int32(len(a.adj) - 1)})
	}
	for i := range s.nodes {
		s.boot(int32(i))
	}
	for i, f := range o.Failures {
		s.push(event{at: int64(f.At), kind: evFailure, aux: int32(i)})
		if f.Until > 0 {
			s.push(event{at: int64(f.Until), kind: evFailure, aux: int32(-1 - i)})
		}
	}
	s.restores = make([]restore, len(o.Failures))
	s.lossyOf = make([]int, len(o.Failures))
	for i := range s.lossyOf {
		s.lossyOf[i] = -1
	}
	for i := 0; i < o.Flows; i++ {
		src := s.rng.Int32N(int32(o.Nodes))
		dst := s.rng.Int32N(int32(o.Nodes - 1))
		if dst >= src {
			dst++
		}
		s.flows = append(s.flows, flow{src: src, dst: dst, lastRecv: -1, lossy: -1})
		// Flows start staggered over one packet interval.
		s.push(event{at: int64(o.TrafficStart) + s.rng.Int64N(int64(o.PacketInterval)), kind: evFlowSend, aux: int32(i)})
	}
	s.startPhase("start")
	return nil
}

// boot starts (or restarts) node i with a fresh router and link monitors.
func (s *sim) boot(i int32) {
	n := &s.nodes[i]
	key := n.key
	n.r = route.New(route.Config{
		Self:            n.id,
		Sign:            key.Sign,
		Verify:          s.cache.verify,
		Now:             s.nowTime,
		RefreshInterval: s.o.Refresh,
	})
	n.alive, n.ver, n.rAt = true, 0, 0
	n.mon = make([]*linkmon.Link, len(n.adj))
	n.monAt = make([]int64, len(n.adj))
	for j := range n.adj {
		var seed [32]byte
		putU64(seed[:], s.rng.Uint64())
		putU64(seed[8:], s.rng.Uint64())
		n.mon[j] = linkmon.New(linkmon.Config{Now: s.nowTime, Seed: seed, Interval: s.o.Probe})
		// Monitors start at a random phase of the probe interval, as real
		// links come up at unrelated times.
		n.monAt[j] = s.now + s.rng.Int64N(int64(50*time.Millisecond))
		s.push(event{at: n.monAt[j], kind: evMonTick, node: i, slot: int32(j)})
	}
	s.rescheduleRouter(i)
	s.bootHeal(i)
}

func putU64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}

// --- event queue ---

// The queue is a 4-ary heap of small (time, order, slot) entries over a slab
// of events: sifting moves 24 bytes, not whole events, and the shallower heap
// touches fewer cache lines per operation.
type hent struct {
	at  int64
	seq uint64
	idx int32
}

func hless(a, b *hent) bool { return a.at < b.at || (a.at == b.at && a.seq < b.seq) }

func (s *sim) push(e event) {
	s.seq++
	var idx int32
	if n := len(s.free); n > 0 {
		idx = s.free[n-1]
		s.free = s.free[:n-1]
		s.slab[idx] = e
	} else {
		idx = int32(len(s.slab))
		s.slab = append(s.slab, e)
	}
	s.q = append(s.q, hent{at: e.at, seq: s.seq, idx: idx})
	h := s.q
	i := len(h) - 1
	x := h[i]
	for i > 0 {
		p := (i - 1) / 4
		if !hless(&x, &h[p]) {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = x
}

func (s *sim) pop() event {
	h := s.q
	top := h[0]
	n := len(h) - 1
	x := h[n]
	h = h[:n]
	s.q = h
	if n > 0 {
		i := 0
		for {
			c := 4*i + 1
			if c >= n {
				break
			}
			m := c
			for k := c + 1; k < c+4 && k < n; k++ {
				if hless(&h[k], &h[m]) {
					m = k
				}
			}
			if !hless(&h[m], &x) {
				break
			}
			h[i] = h[m]
			i = m
		}
		h[i] = x
	}
	e := s.slab[top.idx]
	s.slab[top.idx] = event{}
	s.free = append(s.free, top.idx)
	return e
}

// --- event handling ---

func (s *sim) handle(ev *event) {
	switch ev.kind {
	case evMsg:
		n := &s.nodes[ev.node]
		if !n.alive || s.quarantined(ev.node, ev.slot) {
			return // dropped unopened
		}
		s.receive(ev.node, ev.slot, ev.msg)
	case evData:
		s.forward(ev)
	case evRouterTick:
		n := &s.nodes[ev.node]
		if !n.alive || n.rAt != ev.at {
			return // stale: rescheduled or node restarted
		}
		n.rAt = 0
		n.r.Tick()
		s.afterRouter(ev.node)
	case evMonTick:
		n := &s.nodes[ev.node]
		if !n.alive || n.monAt[ev.slot] != ev.at {
			return
		}
		n.monAt[ev.slot] = 0
		if p := n.mon[ev.slot].Tick(); p != nil {
			s.send(ev.node, ev.slot, p, &s.rep.Probe)
		}
		s.afterMon(ev.node, ev.slot)
	case evFailure:
		s.failure(int(ev.aux))
	case evHealTick:
		n := &s.nodes[ev.node]
		if !n.alive || n.h == nil || n.h.at != ev.at {
			return
		}
		s.healTick(ev.node)
	case evForge:
		n := &s.nodes[ev.node]
		if !n.forging || n.forgeAt != ev.at {
			return
		}
		s.forge(ev.node)
	case evLossyCheck:
		s.checkLossy(int(ev.aux))
	case evFlowSend:
		f := &s.flows[ev.aux]
		s.push(event{at: s.now + int64(s.o.PacketInterval), kind: evFlowSend, aux: ev.aux})
		p := &s.phases[len(s.phases)-1]
		p.Data.Sent++
		if f.reachable {
			p.Data.SentReachable++
		}
		pseq := s.lossyWindow(f)
		s.forward(&event{node: f.src, slot: -1, aux: ev.aux, pseq: pseq, ttl: int16(min(s.o.HopLimit, 32767)), ph: int16(len(s.phases) - 1), reach: f.reachable})
	}
}

// receive hands a control message to the right state machine. Any message
// from a neighbour is proof of life for the link it came over, as an
// authenticated packet is for the real data plane.
func (s *sim) receive(i, slot int32, msg []byte) {
	n := &s.nodes[i]
	mon := n.mon[slot]
	from := s.nodes[n.adj[slot].nbr].id
	switch msg[0] {
	case linkmon.TypeProbe, linkmon.TypeReply:
		reply, err := mon.Receive(msg)
		if err != nil {
			s.rep.Errors++
		}
		if reply != nil {
			s.send(i, slot, reply, &s.rep.Probe)
		}
		if msg[0] == linkmon.TypeReply && mon.State() == linkmon.Up {
			n.r.SetMetric(from, s.linkMetric(i, slot))
			s.lossyMetric(i, slot)
			s.afterRouter(i)
		}
		s.afterMon(i, slot)
	default:
		mon.Heard()
		err := n.r.Receive(from, msg)
		switch {
		case err == nil:
		case errors.Is(err, route.ErrRateLimited):
			if n.h != nil {
				n.h.flooded[slot]++
			}
		case errors.Is(err, route.ErrForged) && s.nodes[n.adj[slot].nbr].forging:
			// Expected: counted from the router's events (afterRouter).
		default:
			s.rep.Errors++
		}
		s.afterRouter(i)
		s.rescheduleMon(i, slot)
	}
}

// send puts a message on the link at slot of node i.
func (s *sim) send(i, slot int32, msg []byte, c *Traffic) {
	c.Msgs++
	c.Bytes += uint64(len(msg))
	a := s.nodes[i].adj[slot]
	e := &s.edges[a.edge]
	if !e.up || e.quar || !s.nodes[a.nbr].alive || s.lost(e) {
		return
	}
	s.push(event{at: s.now + s.latency(e), kind: evMsg, node: a.nbr, slot: a.back, msg: msg})
}

// lost draws whether a message crossing e is lost: the mesh-wide loss, then
// the link's own (a lossy failure).
func (s *sim) lost(e *edge) bool {
	if s.o.Loss > 0 && s.rng.Float64() < s.o.Loss {
		return true
	}
	return e.loss > 0 && s.rng.Float64() < e.loss
}

// edgeLive reports whether the cable of link e carries traffic: not cut, and
// neither end quarantined the other.
func (s *sim) edgeLive(e int32) bool { return s.edges[e].up && !s.edges[e].quar }

// linkUsable is the data plane's view of node i's link at slot: its monitor
// says up and the neighbour is not quarantined.
func (s *sim) linkUsable(i, slot int32) bool {
	return slot >= 0 && s.nodes[i].mon[slot].State() == linkmon.Up && !s.quarantined(i, slot)
}

func (s *sim) latency(e *edge) int64 {
	if s.o.Jitter <= 0 {
		return e.delay
	}
	return e.delay + s.rng.Int64N(int64(s.o.Jitter))
}

func (s *sim) slotOf(i int32, id identity.NodeID) int32 {
	j, ok := s.index[id]
	if !ok {
		return -1
	}
	for k, a := range s.nodes[i].adj {
		if a.nbr == j {
			return int32(k)
		}
	}
	return -1
}

// afterRouter sends what node i's router produced, notes table changes and
// schedules its next tick.
func (s *sim) afterRouter(i int32) {
	n := &s.nodes[i]
	for _, o := range n.r.Outbox() {
		slot := s.slotOf(i, o.To)
		if slot < 0 {
			s.rep.Errors++
			continue
		}
		s.send(i, slot, o.Msg, &s.phases[len(s.phases)-1].Routing)
	}
	for _, e := range n.r.Events() {
		s.rep.RouterEvents[e.Kind.String()]++
		if e.Kind == route.EventForged || e.Kind == route.EventMalformed {
			k := s.slotOf(i, e.Neighbour)
			if k >= 0 && n.h != nil {
				n.h.forged[k]++
			}
			if k >= 0 && s.nodes[n.adj[k].nbr].forging {
				s.rep.ForgedRejected++
			}
		}
	}
	if v := n.r.Table().Version(); v != n.ver {
		n.ver = v
		s.lastChange = s.now
		if s.cur().healAt < 0 {
			s.lastRouting = s.now
		}
	}
	s.rescheduleRouter(i)
}

func (s *sim) rescheduleRouter(i int32) {
	n := &s.nodes[i]
	at := max(int64(n.r.NextDeadline().Sub(s.epoch)), s.now)
	if n.rAt == 0 || at < n.rAt {
		n.rAt = at
		s.push(event{at: at, kind: evRouterTick, node: i})
	}
}

// afterMon applies node i's link monitor transitions to its router.
func (s *sim) afterMon(i, slot int32) {
	n := &s.nodes[i]
	mon := n.mon[slot]
	from := s.nodes[n.adj[slot].nbr].id
	for _, e := range mon.Events() {
		if e.State == linkmon.Up {
			if !s.quarantined(i, slot) {
				n.r.LinkUp(from, s.linkMetric(i, slot))
			}
		} else {
			n.r.LinkDown(from)
			if t, ok := s.detectWant[[2]int32{i, slot}]; ok {
				s.detect = append(s.detect, s.now-t)
				delete(s.detectWant, [2]int32{i, slot})
			}
			s.phases[len(s.phases)-1].Detections++
		}
		s.afterRouter(i)
	}
	s.rescheduleMon(i, slot)
}

func (s *sim) rescheduleMon(i, slot int32) {
	n := &s.nodes[i]
	at := max(int64(n.mon[slot].NextDeadline().Sub(s.epoch)), s.now)
	if n.monAt[slot] == 0 || at < n.monAt[slot] {
		n.monAt[slot] = at
		s.push(event{at: at, kind: evMonTick, node: i, slot: slot})
	}
}

// forward moves a data packet one hop the way the data plane does: the
// table's primary next hop if its link monitor says up, else the alternate,
// never back where it came from, dropped at the hop limit. A packet sent onto
// a cut link whose failure is not yet detected is lost, as it would be.
func (s *sim) forward(ev *event) {
	n := &s.nodes[ev.node]
	f := &s.flows[ev.aux]
	ph := &s.phases[ev.ph]
	if !n.alive {
		s.drops.DeadNode++
		return
	}
	if ev.node == f.dst {
		s.lossyDelivered(f, ev.pseq)
		ph.Data.Delivered++
		if ev.reach {
			ph.Data.DeliveredReachable++
		}
		if f.lastRecv >= 0 {
			cur := &s.phases[len(s.phases)-1]
			if g := s.now - f.lastRecv; g > cur.gaps[ev.aux] {
				cur.gaps[ev.aux] = g
			}
		}
		f.lastRecv = s.now
		return
	}
	var from identity.NodeID
	if ev.slot >= 0 {
		from = s.nodes[n.adj[ev.slot].nbr].id
	}
	up := func(id identity.NodeID) bool { return s.linkUsable(ev.node, s.slotOf(ev.node, id)) }
	next, ok := n.r.Table().NextHop(s.nodes[f.dst].id, from, up)
	if !ok {
		s.drops.NoRoute++
		return
	}
	if ev.ttl <= 1 {
		s.drops.HopLimit++
		return
	}
	slot := s.slotOf(ev.node, next)
	a := n.adj[slot]
	e := &s.edges[a.edge]
	if !e.up || !s.nodes[a.nbr].alive {
		s.drops.LinkDown++
		return
	}
	if e.quar {
		s.drops.Quarantined++
		return
	}
	if s.lost(e) {
		s.drops.Loss++
		return
	}
	s.push(event{at: s.now + s.latency(e), kind: evData, node: a.nbr, slot: a.back, aux: ev.aux, pseq: ev.pseq, ttl: ev.ttl - 1, ph: ev.ph, reach: ev.reach})
}

// failure applies failure i (or, for -1-i, its end).
func (s *sim) failure(i int) {
	restoring := i < 0
	if restoring {
		i = -1 - i
	}
	f := s.o.Failures[i]
	s.endPhase()
	var desc string
	if restoring {
		r := s.restores[i]
		for _, e := range r.edges {
			s.edges[e].up = true
		}
		for _, j := range r.nodes {
			s.nodes[j].alive = true
			s.boot(j)
		}
		switch f.Kind {
		case "lossy":
			if li := s.lossyOf[i]; li >= 0 {
				s.endLossy(li)
			}
		case "forge":
			s.nodes[f.A].forging = false
		}
		desc = "restore " + f.String()
	} else {
		var r restore
		switch f.Kind {
		case "link":
			e := s.findEdge(int32(f.A), int32(f.B))
			if e < 0 {
				s.rep.Warnings = append(s.rep.Warnings, fmt.Sprintf("%v: no such link", f))
			} else {
				r.edges = append(r.edges, e)
			}
		case "random":
			var live []int32
			for e := range s.edges {
				if s.edges[e].up && s.nodes[s.edges[e].a].alive && s.nodes[s.edges[e].b].alive {
					live = append(live, int32(e))
				}
			}
			s.rng.Shuffle(len(live), func(a, b int) { live[a], live[b] = live[b], live[a] })
			r.edges = live[:min(f.Count, len(live))]
		case "node":
			r.nodes = append(r.nodes, int32(f.A))
		case "randnode":
			var live []int32
			for j := range s.nodes {
				if s.nodes[j].alive {
					live = append(live, int32(j))
				}
			}
			s.rng.Shuffle(len(live), func(a, b int) { live[a], live[b] = live[b], live[a] })
			r.nodes = live[:min(f.Count, len(live))]
		case "lossy":
			if e, ok := s.startLossy(i, f); !ok {
				s.rep.Warnings = append(s.rep.Warnings, fmt.Sprintf("%v: no such link (or no flow crosses any)", f))
			} else if f.Busy {
				desc = fmt.Sprintf(" (%d-%d)", s.edges[e].a, s.edges[e].b)
			}
		case "forge":
			s.startForging(int32(f.A))
		}
		for _, e := range r.edges {
			ed := &s.edges[e]
			ed.up = false
			s.expectDown(ed.a, ed.b)
			s.expectDown(ed.b, ed.a)
		}
		for _, j := range r.nodes {
			s.nodes[j].alive = false
			for _, a := range s.nodes[j].adj {
				s.expectDown(a.nbr, j)
			}
		}
		s.restores[i] = r
		desc = f.String() + desc
		if f.Kind == "random" || f.Kind == "randnode" {
			desc += " " + s.describe(r)
		}
	}
	s.startPhase(desc)
}

func (s *sim) describe(r restore) string {
	var b bytes.Buffer
	b.WriteByte('(')
	for k, e := range r.edges {
		if k > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d-%d", s.edges[e].a, s.edges[e].b)
	}
	for k, j := range r.nodes {
		if k > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d", j)
	}
	b.WriteByte(')')
	return b.String()
}

func (s *sim) expectDown(i, nbr int32) {
	if !s.nodes[i].alive {
		return
	}
	for k, a := range s.nodes[i].adj {
		if a.nbr == nbr && s.nodes[i].mon[k].State() == linkmon.Up {
			s.detectWant[[2]int32{i, int32(k)}] = s.now
		}
	}
}

func (s *sim) findEdge(a, b int32) int32 {
	for _, x := range s.nodes[a].adj {
		if x.nbr == b {
			return x.edge
		}
	}
	return -1
}

// --- the shared verification cache ---

// verifyCache lets the simulated nodes share signature verification. A
// verification's result is a deterministic function of (key, label, message,
// signature), so a cache that answers only for an exact match of all four is
// sound. It is keyed by origin and signature prefix and confirms a hit by
// comparing the full bytes, which costs nothing when, as here, every node holds
// the very same slice (Go compares equal pointers without reading them); it is
// cheaper than hashing 3.4 kB per lookup and needs no collision argument.
type verifyCache struct {
	keys         []*identity.VerifyingKey
	index        map[identity.NodeID]int32
	m            map[cacheKey]cacheVal
	hits, misses uint64
}

type cacheKey struct {
	origin identity.NodeID
	sig    [32]byte
}

type cacheVal struct {
	label    string
	msg, sig []byte
}

func newVerifyCache() *verifyCache { return &verifyCache{m: make(map[cacheKey]cacheVal)} }

func (c *verifyCache) verify(origin identity.NodeID, label string, msg, sig []byte) error {
	i, ok := c.index[origin]
	if !ok {
		return fmt.Errorf("sim: node %s: %w", origin.Short(), route.ErrUnknownOrigin)
	}
	var k cacheKey
	k.origin = origin
	copy(k.sig[:], sig)
	if v, ok := c.m[k]; ok && v.label == label && bytes.Equal(v.msg, msg) && bytes.Equal(v.sig, sig) {
		c.hits++
		return nil
	}
	c.misses++
	if err := c.keys[i].Verify(label, msg, sig); err != nil {
		return err
	}
	if len(c.m) >= 1<<20 {
		clear(c.m)
	}
	c.m[k] = cacheVal{label: label, msg: msg, sig: sig}
	return nil
}

// sortedInt64 returns a sorted copy.
func sortedInt64(v []int64) []int64 {
	c := slices.Clone(v)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c
}
