package node

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/linkmon"
	"github.com/x0tta6bl4/x0t/route"
	"github.com/x0tta6bl4/x0t/session"
	"github.com/x0tta6bl4/x0t/transport"
	"github.com/x0tta6bl4/x0t/wire"
)

// The mesh: every peer with an endpoint is a potential neighbour. Link
// monitoring probes each one over its session; a link that answers is given to
// the router, which floods signed adverts of our links and computes, for every
// member, a next hop and a loop-free alternate. The data path sends straight to
// a peer while its link lives, and otherwise through the mesh; when a next hop's
// link dies, the alternate takes over at once, before the protocol converges.
// All of this runs on the control loop; the data path reads only the published
// table and each peer's linkDown flag.

// meshTickInterval paces link probes and failure detection (linkmon probes
// every 50 ms and declares a link dead after ~170 ms of silence).
const meshTickInterval = 10 * time.Millisecond

// freshLinkGrace is how long a new direct session is trusted before link
// monitoring has a verdict: traffic goes direct meanwhile.
const freshLinkGrace = 500 * time.Millisecond

// stallThreshold is a gap between mesh ticks that means the control loop was
// starved rather than idle.
const stallThreshold = 5 * meshTickInterval

type meshState struct {
	lastTick time.Time
	router   *route.Router
	table    atomic.Pointer[route.Table]
	links    map[identity.NodeID]*monitor
	frags    map[identity.NodeID]*wire.Reassembler
}

// monitor is the link state kept for one neighbour.
type monitor struct {
	link      *linkmon.Link
	heard     int64     // the peer's lastRecv when we last told linkmon
	since     time.Time // monitoring started (or restarted)
	up        bool      // the router knows the link
	everUp    bool
	metricAt  time.Time
	advertise uint32
	avoided   bool // the MAPE-K loop made the link a last resort
}

// Link monitoring and routing run on the real clock, not Config.Now: they
// measure the network (round trips, silences), while Config.Now, which tests
// move ahead, governs protocol lifetimes (rekeys, keepalives).
func (n *Node) initMesh() {
	n.mesh.router = route.New(route.Config{
		Self:   n.ID(),
		Sign:   n.cfg.Key.Signing.Sign,
		Verify: n.verifyAdvert,
	})
	n.mesh.table.Store(n.mesh.router.Table())
	n.mesh.links = map[identity.NodeID]*monitor{}
	n.mesh.frags = map[identity.NodeID]*wire.Reassembler{}
}

// verifyAdvert checks a routing advert's signature with its origin's key, from
// the origin's certificate: only members of the mesh can speak, and each only
// for itself.
func (n *Node) verifyAdvert(origin identity.NodeID, label string, msg, sig []byte) error {
	if origin == n.ID() {
		return n.cfg.Key.Signing.Public().Verify(label, msg, sig)
	}
	p := n.peers.Load().byID[origin]
	if p == nil {
		return fmt.Errorf("%w: %s", route.ErrUnknownOrigin, origin.Short())
	}
	vk, err := p.verifyingKey()
	if err != nil {
		return err
	}
	return vk.Verify(label, msg, sig)
}

// meshTick runs link monitoring and the router; the control loop calls it
// every meshTickInterval with the real time.
func (n *Node) meshTick(now time.Time) {
	peers := n.peers.Load()
	r := n.mesh.router
	// If this loop itself was not scheduled for a while (an overloaded
	// machine), silence on the links says nothing about them: replies may be
	// waiting unread in the socket. Count this tick as hearing from everyone
	// rather than declaring healthy links dead.
	stalled := !n.mesh.lastTick.IsZero() && now.Sub(n.mesh.lastTick) > stallThreshold
	n.mesh.lastTick = now
	for id, m := range n.mesh.links {
		if p := peers.byID[id]; p == nil {
			if m.up {
				r.LinkDown(id)
			}
			delete(n.mesh.links, id)
			delete(n.mesh.frags, id)
		}
	}
	for id, p := range peers.byID {
		m := n.mesh.links[id]
		if _, ok := p.Endpoint(); !ok {
			continue
		}
		kp := p.current.Load()
		if m == nil {
			if kp == nil {
				continue // monitoring starts with the first session
			}
			var seed [32]byte
			rand.Read(seed[:])
			m = &monitor{link: linkmon.New(linkmon.Config{Seed: seed}), since: now}
			n.mesh.links[id] = m
		}
		if last := p.lastRecv.Load(); last > m.heard || stalled {
			m.heard = last
			m.link.Heard()
		}
		probe := m.link.Tick()
		if probe != nil && usable(kp, n.now()) {
			n.sendLink(p, kp, probe, n.now())
		}
		for _, ev := range m.link.Events() {
			switch ev.State {
			case linkmon.Up:
				m.up, m.everUp = true, true
				m.advertise = linkMetric(m.link)
				if m.avoided {
					m.advertise = min(m.advertise*avoidFactor, route.MaxMetric)
				}
				m.metricAt = now
				r.LinkUp(id, m.advertise)
				n.stats.LinkUps.Add(1)
				n.log.Info("link up", "peer", p.Name(), "rtt", m.link.SRTT())
			case linkmon.Down:
				m.up = false
				n.countFailovers(id)
				r.LinkDown(id)
				n.stats.LinkDowns.Add(1)
				n.log.Info("link down", "peer", p.Name(), "silence", ev.Silence)
			}
		}
		// The data path goes direct while the link lives, or while a new
		// session has not yet had time to prove itself.
		down := !m.up && (m.everUp || now.Sub(m.since) > freshLinkGrace)
		if p.linkDown.Load() != down {
			p.linkDown.Store(down)
		}
		if m.up && !m.avoided && now.Sub(m.metricAt) >= time.Second {
			m.metricAt = now
			if metric := linkMetric(m.link); metric != m.advertise {
				m.advertise = metric
				r.SetMetric(id, metric) // the router applies hysteresis
			}
		}
	}
	if !now.Before(r.NextDeadline()) {
		r.Tick()
	}
	n.flushRouter(n.now())
}

// linkMetric is the routing metric of a monitored link.
func linkMetric(l *linkmon.Link) uint32 {
	return route.Metric(l.SRTT(), l.Loss())
}

// flushRouter sends the router's messages and publishes a new table.
func (n *Node) flushRouter(now time.Time) {
	r := n.mesh.router
	peers := n.peers.Load()
	for _, out := range r.Outbox() {
		p := peers.byID[out.To]
		if p == nil {
			continue
		}
		if kp := p.current.Load(); usable(kp, now) {
			n.sendLink(p, kp, out.Msg, now)
		}
	}
	for _, ev := range r.Events() {
		n.stats.RouteRejected.Add(1)
		if p := peers.byID[ev.Neighbour]; p != nil {
			switch ev.Kind {
			case route.EventForged, route.EventMalformed:
				p.faults.forged.Add(1)
			case route.EventFlood:
				p.faults.flooded.Add(1)
			}
		}
		n.log.Warn("routing: neighbour misbehaves", "event", ev.Kind.String(), "peer", ev.Neighbour.Short())
	}
	if t := r.Table(); t != n.mesh.table.Load() {
		n.mesh.table.Store(t)
		n.stats.RouteChanges.Add(1)
	}
}

// sendLink sends a link message to a neighbour on its session, in fragments if
// it does not fit one packet.
func (n *Node) sendLink(p *Peer, kp *session.Keypair, msg []byte, now time.Time) {
	ep, ok := p.Endpoint()
	if !ok {
		return
	}
	var parts [][]byte
	if len(msg) <= n.mtu {
		parts = [][]byte{msg}
	} else {
		var id [4]byte
		rand.Read(id[:])
		frags, err := wire.Fragments(msg, binary.LittleEndian.Uint32(id[:]))
		if err != nil {
			n.log.Warn("link message too large", "bytes", len(msg))
			return
		}
		for _, f := range frags {
			parts = append(parts, append([]byte{wire.LinkFragment}, f...))
		}
	}
	msgs := make([]transport.Message, 0, len(parts))
	for _, part := range parts {
		buf := make([]byte, offset+len(part)+wire.TagSize)
		copy(buf[offset:], part)
		l, err := kp.Seal(buf, len(part), now)
		if err != nil {
			return
		}
		msgs = append(msgs, transport.Message{Buf: buf[:l], N: l, Addr: ep})
	}
	p.lastSent.Store(now.UnixNano())
	if err := n.cfg.Conn.WriteBatch(msgs); err != nil && !closedErr(err) {
		n.log.Debug("sending link message", "err", err)
	}
}

// handleLinkMsg takes a routing or monitoring message from a neighbour.
func (n *Node) handleLinkMsg(lm linkMsg) {
	p, msg := lm.from, lm.data
	if n.peers.Load().byID[p.id] != p {
		return // removed meanwhile
	}
	if msg[0] == wire.LinkFragment {
		f, err := wire.ParseFragment(msg[1:])
		if err != nil {
			n.stats.DropFragment.Add(1)
			return
		}
		ra := n.mesh.frags[p.id]
		if ra == nil {
			ra = wire.NewReassembler(wire.ReassemblyLimits{MaxPending: 64, MaxPerSource: 64, Timeout: 5 * time.Second})
			n.mesh.frags[p.id] = ra
		}
		// One reassembler per neighbour: the source is the neighbour itself.
		if msg = ra.Add(netip.AddrPort{}, f, n.now()); msg == nil {
			return
		}
	}
	switch {
	case msg[0] >= wire.LinkRouteMin && msg[0] <= wire.LinkRouteMax:
		if err := n.mesh.router.Receive(p.id, msg); err != nil {
			n.stats.RouteRejected.Add(1)
			if errors.Is(err, route.ErrRateLimited) {
				p.faults.flooded.Add(1)
			}
			n.log.Debug("routing message refused", "peer", p.Name(), "err", err)
		}
		n.flushRouter(n.now())
	case msg[0] == linkmon.TypeReply:
		if m := n.mesh.links[p.id]; m != nil {
			if _, err := m.link.Receive(msg); err != nil {
				n.log.Debug("probe reply refused", "peer", p.Name(), "err", err)
			}
		}
	default:
		n.stats.DropMalformed.Add(1)
	}
}

// RouteInfo describes the route to one member, for `x0t routes`.
type RouteInfo struct {
	Dest      string `json:"dest"`
	DestID    string `json:"dest_id"`
	Next      string `json:"next"`
	Alt       string `json:"alt,omitempty"`
	Metric    uint32 `json:"metric"`
	Hops      int    `json:"hops"`
	AltMetric uint32 `json:"alt_metric,omitempty"`
	Direct    bool   `json:"direct"` // traffic to it goes straight to it now
}

// Routes returns the routing table as it stands.
func (n *Node) Routes() []RouteInfo {
	peers := n.peers.Load()
	name := func(id identity.NodeID) string {
		if p := peers.byID[id]; p != nil {
			return p.Name()
		}
		return id.Short()
	}
	var out []RouteInfo
	n.mesh.table.Load().Range(func(dst identity.NodeID, r route.Route) bool {
		ri := RouteInfo{Dest: name(dst), DestID: dst.String(), Next: name(r.Next), Metric: r.Metric, Hops: r.Hops}
		if r.HasAlt {
			ri.Alt, ri.AltMetric = name(r.Alt), r.AltMetric
		}
		if p := peers.byID[dst]; p != nil {
			ri.Direct = p.direct()
		}
		out = append(out, ri)
		return true
	})
	return out
}

// LinkInfo describes the link to one neighbour.
type LinkInfo struct {
	Peer   string        `json:"peer"`
	ID     string        `json:"id"`
	State  string        `json:"state"`
	RTT    time.Duration `json:"rtt_ns"`
	Loss   float64       `json:"loss"`
	Metric uint32        `json:"metric,omitempty"`
}

// Links returns the state of every monitored link.
func (n *Node) Links() []LinkInfo {
	var out []LinkInfo
	n.do(func() {
		peers := n.peers.Load()
		for id, m := range n.mesh.links {
			p := peers.byID[id]
			if p == nil {
				continue
			}
			out = append(out, LinkInfo{Peer: p.Name(), ID: id.String(), State: m.link.State().String(), RTT: m.link.SRTT(),
				Loss: m.link.Loss(), Metric: m.advertise})
		}
	})
	return out
}

// countFailovers counts, when the link to neighbour nbr dies, the
// destinations whose traffic it carried and that now move at once to their
// loop-free alternate (before routing reconverges): each is one failover.
func (n *Node) countFailovers(nbr identity.NodeID) {
	var moved uint64
	n.mesh.table.Load().Range(func(_ identity.NodeID, r route.Route) bool {
		if r.Next == nbr && r.HasAlt {
			moved++
		}
		return true
	})
	n.stats.Failovers.Add(moved)
}
