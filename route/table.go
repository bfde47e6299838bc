package route

import (
	"encoding/binary"

	"github.com/x0tta6bl4/x0t/identity"
)

// Route is the forwarding decision for one destination.
type Route struct {
	// Next is the primary next hop: the neighbour on a shortest path.
	Next identity.NodeID
	// Alt is a loop-free alternate next hop (RFC 5286), used while the link
	// to Next is down, before the protocol converges. Valid if HasAlt.
	Alt    identity.NodeID
	HasAlt bool
	// NodeProtecting reports that the path through Alt avoids Next itself,
	// so it also survives the failure of the node Next, not only of the link.
	NodeProtecting bool
	// Metric and Hops describe the primary path; AltMetric and AltHops the
	// path through Alt.
	Metric    uint32
	Hops      int
	AltMetric uint32
	AltHops   int
}

// Table is an immutable routing table snapshot. The router never modifies a
// Table it has returned, so a data plane may read one from any goroutine while
// the router builds the next (swap the pointer atomically).
type Table struct {
	version uint64
	dst     []identity.NodeID // sorted
	routes  []Route
}

// Version increases with every table the router publishes.
func (t *Table) Version() uint64 {
	if t == nil {
		return 0
	}
	return t.version
}

// Len returns the number of destinations with a route.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.dst)
}

// Lookup returns the route to dst. It does not allocate.
func (t *Table) Lookup(dst identity.NodeID) (Route, bool) {
	if t == nil {
		return Route{}, false
	}
	hi0, lo0 := split(&dst)
	lo, hi := 0, len(t.dst)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		h, l := split(&t.dst[m])
		if h < hi0 || (h == hi0 && l < lo0) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(t.dst) && t.dst[lo] == dst {
		return t.routes[lo], true
	}
	return Route{}, false
}

// NextHop is the data plane's forwarding decision: the primary next hop if its
// link is up, else the alternate if its link is up. from is the neighbour the
// packet came from (zero for locally sent traffic): a packet is never sent
// back where it came from, since on consistent tables that only happens inside
// a transient micro-loop, and dropping it early beats circling until the hop
// limit. up reports whether the link to a neighbour is live.
func (t *Table) NextHop(dst, from identity.NodeID, up func(identity.NodeID) bool) (identity.NodeID, bool) {
	r, ok := t.Lookup(dst)
	if !ok {
		return identity.NodeID{}, false
	}
	if r.Next != from && up(r.Next) {
		return r.Next, true
	}
	if r.HasAlt && r.Alt != from && up(r.Alt) {
		return r.Alt, true
	}
	return identity.NodeID{}, false
}

// Range calls f for every route in destination order until f returns false.
func (t *Table) Range(f func(dst identity.NodeID, r Route) bool) {
	if t == nil {
		return
	}
	for i := range t.dst {
		if !f(t.dst[i], t.routes[i]) {
			return
		}
	}
}

func split(id *identity.NodeID) (uint64, uint64) {
	return binary.BigEndian.Uint64(id[:8]), binary.BigEndian.Uint64(id[8:])
}

func cmpID(a, b *identity.NodeID) int {
	ah, al := split(a)
	bh, bl := split(b)
	switch {
	case ah < bh || (ah == bh && al < bl):
		return -1
	case ah == bh && al == bl:
		return 0
	}
	return 1
}

// withoutNeighbour returns a copy of t repaired for a dead link to nbr: routes
// through nbr move to their alternate at once, routes with no alternate are
// dropped, and alternates through nbr are forgotten. It is the local repair
// that holds until the next SPF run.
func (t *Table) withoutNeighbour(nbr identity.NodeID, version uint64) *Table {
	nt := &Table{version: version, dst: make([]identity.NodeID, 0, len(t.dst)), routes: make([]Route, 0, len(t.routes))}
	for i, r := range t.routes {
		if r.HasAlt && r.Alt == nbr {
			r.HasAlt, r.NodeProtecting, r.Alt, r.AltMetric, r.AltHops = false, false, identity.NodeID{}, 0, 0
		}
		if r.Next == nbr {
			if !r.HasAlt {
				continue
			}
			r = Route{Next: r.Alt, Metric: r.AltMetric, Hops: r.AltHops}
		}
		nt.dst = append(nt.dst, t.dst[i])
		nt.routes = append(nt.routes, r)
	}
	return nt
}
