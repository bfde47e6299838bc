package route

import (
	"math"
	"slices"

	"github.com/x0tta6bl4/x0t/identity"
)

const inf = math.MaxUint64

// graph is the two-way-checked topology in compressed sparse rows: node i's
// out-edges are to[off[i]:off[i+1]] with metrics w[...]. Nodes are indexed in
// NodeID order, so every tie-break by index is a tie-break by NodeID and all
// routers break ties the same way.
type graph struct {
	ids     []identity.NodeID
	idx     map[identity.NodeID]int32
	ver     uint64
	entries []*lsdbEntry
	off     []int32
	to      []int32
	w       []uint32
}

// spfState is a router's reusable SPF scratch space.
type spfState struct {
	g      graph
	dist   []uint64
	hops   []int32
	first  []int32
	ndist  []uint64
	nhops  []int32
	alt    []int32
	altKey []uint64 // (not node-protecting) << 63 | cost, lower is better
	altNP  []bool
	altC   []uint64
	altH   []int32
	wS     []uint64
	heap   []heapItem
	dst    []identity.NodeID
	routes []Route
}

type heapItem struct {
	d uint64
	h int32
	v int32
}

// buildGraph assembles the topology from the database. An edge u→v with u's
// metric is used only if v's advert lists u too (two-way check): a node speaks
// only for its own links, so a link claimed by one end alone is ignored. The
// router's own edges come from its live links, not its last advert, so a link
// it knows is dead is never used even while re-origination is rate limited.
//
// The node index and each advert's neighbour indices are kept between runs
// and redone only when the set of origins changes.
func (r *Router) buildGraph() *graph {
	g := &r.spf.g
	self := r.cfg.Self
	if g.idx == nil || g.ver != r.originsVer {
		g.ids = g.ids[:0]
		for id := range r.lsdb {
			g.ids = append(g.ids, id)
		}
		if _, ok := r.lsdb[self]; !ok {
			g.ids = append(g.ids, self)
		}
		slices.SortFunc(g.ids, func(a, b identity.NodeID) int { return cmpID(&a, &b) })
		if g.idx == nil {
			g.idx = make(map[identity.NodeID]int32, len(g.ids))
		}
		clear(g.idx)
		for i, id := range g.ids {
			g.idx[id] = int32(i)
		}
		g.ver = r.originsVer
	}
	g.entries = grow(g.entries, len(g.ids))
	var nbr identity.NodeID
	for i, id := range g.ids {
		e := r.lsdb[id]
		g.entries[i] = e
		if e == nil || (e.idxVer == g.ver && e.nbrIdx != nil) {
			continue
		}
		e.nbrIdx = grow(e.nbrIdx, e.raw.nlinks())
		e.known = e.known[:0]
		for k := range e.nbrIdx {
			b, _ := e.raw.link(k)
			copy(nbr[:], b)
			j, ok := g.idx[nbr]
			if !ok {
				j = -1
			} else {
				e.known = append(e.known, j) // ascending: links and indices both follow NodeID order
			}
			e.nbrIdx[k] = j
		}
		e.idxVer = g.ver
	}
	selfIdx := g.idx[self]
	g.off = append(g.off[:0], 0)
	g.to, g.w = g.to[:0], g.w[:0]
	for u := range g.ids {
		if int32(u) == selfIdx {
			for _, n := range r.nbrList {
				j, ok := g.idx[n.id]
				if !n.up || !ok {
					continue
				}
				if e := g.entries[j]; e != nil && lists(e.known, selfIdx) {
					g.to = append(g.to, j)
					g.w = append(g.w, n.metric)
				}
			}
		} else if e := g.entries[u]; e != nil {
			for k, j := range e.nbrIdx {
				if j < 0 {
					continue
				}
				if j == selfIdx {
					if n := r.nbrs[g.ids[u]]; n == nil || !n.up {
						continue
					}
				} else if ev := g.entries[j]; ev == nil || !lists(ev.known, int32(u)) {
					continue
				}
				_, m := e.raw.link(k)
				g.to = append(g.to, j)
				g.w = append(g.w, m)
			}
		}
		g.off = append(g.off, int32(len(g.to)))
	}
	return g
}

// lists reports whether the sorted index list holds v.
func lists(idx []int32, v int32) bool {
	_, ok := slices.BinarySearch(idx, v)
	return ok
}

// dijkstra computes shortest distances from root, with hop count and the
// first hop (index of root's neighbour) of the chosen path. Ties go to fewer
// hops, then to the lower first-hop NodeID, so the result is deterministic.
func (s *spfState) dijkstra(g *graph, root int32, dist []uint64, hops, first []int32) {
	for i := range dist {
		dist[i] = inf
		hops[i] = math.MaxInt32
		if first != nil {
			first[i] = -1
		}
	}
	dist[root], hops[root] = 0, 0
	h := append(s.heap[:0], heapItem{0, 0, root})
	for len(h) > 0 {
		it := h[0]
		n := len(h) - 1
		h[0] = h[n]
		h = h[:n]
		down(h, 0)
		u := it.v
		if it.d != dist[u] || it.h != hops[u] {
			continue
		}
		for e := g.off[u]; e < g.off[u+1]; e++ {
			v := g.to[e]
			nd, nh := it.d+uint64(g.w[e]), it.h+1
			fh := v
			if first != nil && u != root {
				fh = first[u]
			}
			better := nd < dist[v] || (nd == dist[v] && nh < hops[v])
			if !better && first != nil && nd == dist[v] && nh == hops[v] && fh < first[v] {
				first[v] = fh // same key: only the tie-break changes
			}
			if better {
				dist[v], hops[v] = nd, nh
				if first != nil {
					first[v] = fh
				}
				h = append(h, heapItem{nd, nh, v})
				up(h, len(h)-1)
			}
		}
	}
	s.heap = h
}

func less(a, b heapItem) bool { return a.d < b.d || (a.d == b.d && a.h < b.h) }

func up(h []heapItem, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !less(h[i], h[p]) {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func down(h []heapItem, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && less(h[r], h[l]) {
			m = r
		}
		if !less(h[m], h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// compute runs SPF from the router and from each of its neighbours and fills
// s.dst/s.routes with a primary next hop and the best loop-free alternate for
// every reachable destination.
//
// Alternate N for destination D (primary next hop P) must satisfy the RFC 5286
// inequality dist(N,D) < dist(N,S) + dist(S,D): N's shortest path to D does not
// come back through S, so one-hop repair through N cannot loop. Among such N,
// node-protecting ones (dist(N,D) < dist(N,P) + dist(P,D): the path avoids P
// itself) are preferred, then the lowest total cost, then the lowest NodeID.
func (s *spfState) compute(g *graph, self int32) {
	n := len(g.ids)
	s.dist, s.hops, s.first = grow(s.dist, n), grow(s.hops, n), grow(s.first, n)
	s.ndist, s.nhops = grow(s.ndist, n), grow(s.nhops, n)
	s.alt, s.altKey, s.altNP = grow(s.alt, n), grow(s.altKey, n), grow(s.altNP, n)
	s.altC, s.altH = grow(s.altC, n), grow(s.altH, n)
	s.dijkstra(g, self, s.dist, s.hops, s.first)
	for i := range s.alt {
		s.alt[i], s.altKey[i] = -1, inf
	}
	s.wS = grow(s.wS, n) // metric from self to each neighbour, by index
	for i := range s.wS {
		s.wS[i] = inf
	}
	for e := g.off[self]; e < g.off[self+1]; e++ {
		s.wS[g.to[e]] = uint64(g.w[e])
	}
	for e := g.off[self]; e < g.off[self+1]; e++ {
		nb, wSN := g.to[e], uint64(g.w[e])
		if s.dist[nb] == inf {
			continue
		}
		s.dijkstra(g, nb, s.ndist, s.nhops, nil)
		dNS := s.ndist[self]
		if dNS == inf {
			continue
		}
		for d := int32(0); d < int32(n); d++ {
			p := s.first[d]
			if d == self || s.dist[d] == inf || p == nb || s.ndist[d] == inf {
				continue
			}
			if s.ndist[d] >= dNS+s.dist[d] {
				continue // not loop-free: N's path to D may come back through S
			}
			np := false
			if d != p {
				if wSP := s.wS[p]; wSP != inf && s.ndist[p] != inf {
					np = s.ndist[d] < s.ndist[p]+(s.dist[d]-wSP)
				}
			}
			cost := wSN + s.ndist[d]
			key := cost
			if !np {
				key |= 1 << 63
			}
			if key < s.altKey[d] || (key == s.altKey[d] && nb < s.alt[d]) {
				s.alt[d], s.altKey[d], s.altNP[d] = nb, key, np
				s.altC[d], s.altH[d] = cost, s.nhops[d]+1
			}
		}
	}
	s.dst, s.routes = s.dst[:0], s.routes[:0]
	for d := int32(0); d < int32(n); d++ {
		if d == self || s.dist[d] == inf {
			continue
		}
		rt := Route{Next: g.ids[s.first[d]], Metric: sat32(s.dist[d]), Hops: int(s.hops[d])}
		if a := s.alt[d]; a >= 0 {
			rt.Alt, rt.HasAlt, rt.NodeProtecting = g.ids[a], true, s.altNP[d]
			rt.AltMetric, rt.AltHops = sat32(s.altC[d]), int(s.altH[d])
		}
		s.dst = append(s.dst, g.ids[d])
		s.routes = append(s.routes, rt)
	}
}

func sat32(v uint64) uint32 {
	if v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}
