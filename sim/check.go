package sim

import (
	"math"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/linkmon"
	"github.com/x0tta6bl4/x0t/route"
)

const infDist = math.MaxUint64

// startPhase opens a measurement phase at the current time: which flows have
// a path within the hop limit on the surviving topology, fresh counters.
func (s *sim) startPhase(desc string) {
	p := Phase{At: time.Duration(s.now), Event: desc, gaps: make([]int64, len(s.flows)), reach: make([]bool, len(s.flows)), start: s.now, healAt: -1}
	s.updateReach(func(k int, f *flow, was bool) {
		p.reach[k] = f.reachable
		if f.reachable && !was && f.lastRecv >= 0 {
			// A path exists again: its gap counts from now, not from when the
			// destination was cut off.
			f.lastRecv = s.now
		}
	})
	s.phases = append(s.phases, p)
	s.lastChange, s.lastRouting = s.now, s.now
}

// reachChanged recomputes, after a change of the topology within a phase (a
// quarantine), which flows have a path; a flow that lost it is no longer
// judged on its gaps in this phase.
func (s *sim) reachChanged() {
	p := s.cur()
	s.updateReach(func(k int, f *flow, _ bool) { p.reach[k] = p.reach[k] && f.reachable })
}

// updateReach recomputes for every flow whether a path within the hop limit
// exists on the surviving topology (one BFS per source), then calls fn with
// the flow and whether it was reachable before.
func (s *sim) updateReach(fn func(k int, f *flow, was bool)) {
	hops := map[int32][]int32{}
	for k := range s.flows {
		f := &s.flows[k]
		h, ok := hops[f.src]
		if !ok {
			h = s.bfs(f.src)
			hops[f.src] = h
		}
		d := h[f.dst]
		was := f.reachable
		f.reachable = d >= 0 && int(d) < s.o.HopLimit
		fn(k, f, was)
	}
}

// bfs returns hop counts from src over the real surviving topology (-1: unreachable).
func (s *sim) bfs(src int32) []int32 {
	d := make([]int32, len(s.nodes))
	for i := range d {
		d[i] = -1
	}
	if !s.nodes[src].alive {
		return d
	}
	d[src] = 0
	q := append(s.scratch[:0], src)
	for len(q) > 0 {
		u := q[0]
		q = q[1:]
		for _, a := range s.nodes[u].adj {
			if d[a.nbr] < 0 && s.edgeLive(a.edge) && s.nodes[a.nbr].alive {
				d[a.nbr] = d[u] + 1
				q = append(q, a.nbr)
			}
		}
	}
	s.scratch = q[:0]
	return d
}

// endPhase closes the current phase: convergence verified against shortest
// paths on the surviving topology, detection times, data gaps, stretch.
func (s *sim) endPhase() {
	p := &s.phases[len(s.phases)-1]
	p.Duration = time.Duration(s.now - p.start)
	p.Convergence = time.Duration(s.lastRouting - p.start)
	p.Settled = time.Duration(s.lastChange - p.start)
	p.Wrong, p.Undetected = s.verify()
	p.Converged = p.Wrong == 0 && p.Undetected == 0
	if len(s.detect) > 0 {
		d := sortedInt64(s.detect)
		p.DetectMedian, p.DetectMax = time.Duration(d[len(d)/2]), time.Duration(d[len(d)-1])
	}
	s.detect = nil
	clear(s.detectWant)
	var gaps []int64
	thresh := 5 * int64(s.o.PacketInterval)
	for k := range s.flows {
		f := &s.flows[k]
		if !p.reach[k] || s.now <= int64(s.o.TrafficStart) {
			continue
		}
		g := p.gaps[k]
		if last := max(f.lastRecv, p.start, int64(s.o.TrafficStart)); s.now-last > g {
			g = s.now - last
		}
		if g > thresh {
			gaps = append(gaps, g)
		}
	}
	p.gapList = gaps
	if len(gaps) > 0 {
		gaps = sortedInt64(gaps)
		p.Disrupted, p.GapMedian, p.GapMax = len(gaps), time.Duration(gaps[len(gaps)/2]), time.Duration(gaps[len(gaps)-1])
	}
	p.Stretch = s.stretch()
	s.collectHeal(p)
	if s.o.check != nil {
		s.o.check(s, p)
	}
}

// weights returns, per node, the metric towards each adjacency slot on the
// real surviving topology (infDist where the link is cut or a node is dead),
// taken from the routers' advertised metrics, and how many live link ends
// their monitors do not (yet) see as up or see up though cut.
func (s *sim) weights() ([][]uint64, int) {
	w := make([][]uint64, len(s.nodes))
	undetected := 0
	for i := range s.nodes {
		n := &s.nodes[i]
		w[i] = make([]uint64, len(n.adj))
		for k, a := range n.adj {
			w[i][k] = infDist
			live := n.alive && s.edgeLive(a.edge) && s.nodes[a.nbr].alive
			up := n.alive && n.mon[k].State() == linkmon.Up
			if live != up {
				undetected++
			}
			if !live {
				continue
			}
			if m, ok := n.r.LinkMetric(s.nodes[a.nbr].id); ok {
				w[i][k] = uint64(m)
			} else {
				w[i][k] = uint64(route.Metric(2*time.Duration(s.edges[a.edge].delay), 0))
			}
		}
	}
	return w, undetected
}

// dijkstra over the simulated topology with per-slot weights.
func (s *sim) dijkstra(src int32, w [][]uint64, dist []uint64) {
	for i := range dist {
		dist[i] = infDist
	}
	dist[src] = 0
	h := []distItem{{0, src}}
	for len(h) > 0 {
		it := h[0]
		h[0] = h[len(h)-1]
		h = h[:len(h)-1]
		siftDown(h)
		if it.d != dist[it.v] {
			continue
		}
		for k, a := range s.nodes[it.v].adj {
			if w[it.v][k] == infDist {
				continue
			}
			if nd := it.d + w[it.v][k]; nd < dist[a.nbr] {
				dist[a.nbr] = nd
				h = append(h, distItem{nd, a.nbr})
				siftUp(h)
			}
		}
	}
}

type distItem struct {
	d uint64
	v int32
}

func siftUp(h []distItem) {
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[p].d <= h[i].d {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func siftDown(h []distItem) {
	i := 0
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].d < h[l].d {
			m = r
		}
		if h[i].d <= h[m].d {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// verify checks every live router's table against shortest paths on the
// surviving topology: a route to exactly the reachable destinations, with the
// shortest metric, through a next hop on a shortest path. Next hops on
// shortest paths strictly decrease the distance to the destination, so a
// table set that passes forwards every packet to its destination without a
// loop. It returns the wrong entries and the link ends whose monitor
// disagrees with the cable.
func (s *sim) verify() (wrong, undetected int) {
	w, undetected := s.weights()
	n := len(s.nodes)
	dist := make([][]uint64, n)
	for i := range dist {
		dist[i] = make([]uint64, n)
		if s.nodes[i].alive {
			s.dijkstra(int32(i), w, dist[i])
		}
	}
	for i := range s.nodes {
		ni := &s.nodes[i]
		if !ni.alive {
			continue
		}
		tb := ni.r.Table()
		for d := range s.nodes {
			if d == i || !s.nodes[d].alive {
				continue
			}
			r, ok := tb.Lookup(s.nodes[d].id)
			if dist[i][d] == infDist {
				if ok {
					wrong++
				}
				continue
			}
			if !ok || uint64(r.Metric) != min(dist[i][d], math.MaxUint32) {
				wrong++
				continue
			}
			k := s.slotOf(int32(i), r.Next)
			if k < 0 || w[i][k] == infDist || w[i][k]+dist[ni.adj[k].nbr][d] != dist[i][d] {
				wrong++
			}
		}
	}
	return wrong, undetected
}

// walk follows the tables from src to dst as the data plane would, with down
// (if not nil) reporting which link ends count as dead, and calls edge (if not
// nil) with each link crossed. It returns the one-way delay of the path, its
// hop count, and whether it arrived; looped reports a packet that came back to
// a node it had passed.
func (s *sim) walk(src, dst int32, down func(i, slot int32) bool, edge func(int32)) (delay int64, hops int, arrived, looped bool) {
	if down == nil {
		down = func(int32, int32) bool { return false }
	}
	if len(s.visit) != len(s.nodes) {
		s.visit = make([]uint32, len(s.nodes))
	}
	s.visitGen++
	cur, prev := src, int32(-1)
	dstID := s.nodes[dst].id
	for cur != dst {
		if s.visit[cur] == s.visitGen {
			return delay, hops, false, true
		}
		s.visit[cur] = s.visitGen
		n := &s.nodes[cur]
		if !n.alive {
			return delay, hops, false, false
		}
		var from identity.NodeID
		if prev >= 0 {
			from = s.nodes[prev].id
		}
		c := cur
		next, ok := n.r.Table().NextHop(dstID, from, func(id identity.NodeID) bool {
			k := s.slotOf(c, id)
			return s.linkUsable(c, k) && !down(c, k)
		})
		if !ok {
			return delay, hops, false, false
		}
		k := s.slotOf(cur, next)
		a := n.adj[k]
		if !s.edgeLive(a.edge) || !s.nodes[a.nbr].alive || down(cur, k) {
			return delay, hops, false, false
		}
		if edge != nil {
			edge(a.edge)
		}
		delay += s.edges[a.edge].delay
		hops++
		prev, cur = cur, a.nbr
	}
	return delay, hops, true, false
}

// stretch compares the one-way delay of the paths the tables give with the
// least-delay paths, from StretchSources random sources to up to 64 random
// destinations each.
func (s *sim) stretch() Stretch {
	var st Stretch
	var sum float64
	n := len(s.nodes)
	w := make([][]uint64, n)
	for i := range s.nodes {
		w[i] = make([]uint64, len(s.nodes[i].adj))
		for k, a := range s.nodes[i].adj {
			w[i][k] = infDist
			if s.nodes[i].alive && s.edgeLive(a.edge) && s.nodes[a.nbr].alive {
				w[i][k] = uint64(s.edges[a.edge].delay)
			}
		}
	}
	dist := make([]uint64, n)
	for k := 0; k < s.o.StretchSources; k++ {
		src := s.rng.Int32N(int32(n))
		if !s.nodes[src].alive {
			continue
		}
		s.dijkstra(src, w, dist)
		for j := 0; j < 64; j++ {
			dst := s.rng.Int32N(int32(n))
			if dst == src || dist[dst] == infDist || !s.nodes[dst].alive {
				continue
			}
			d, _, ok, loop := s.walk(src, dst, nil, nil)
			st.Pairs++
			switch {
			case loop:
				st.Loops++
			case !ok:
				st.Unrouted++
			default:
				x := float64(d) / float64(dist[dst])
				sum += x
				st.Max = max(st.Max, x)
				if x <= 1+1e-9 {
					st.Optimal++
				}
			}
		}
	}
	if ok := st.Pairs - st.Loops - st.Unrouted; ok > 0 {
		st.Mean = sum / float64(ok)
	}
	return st
}
