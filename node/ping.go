package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/session"
	"github.com/x0tta6bl4/x0t/transport"
	"github.com/x0tta6bl4/x0t/wire"
)

// Mesh ping (`x0t ping NODE`): an ICMP echo request from this node's own
// overlay address, sealed for the peer and sent on a path the caller picks
// (the route the traffic takes now, or the route's loop-free alternate), and
// answered by the peer's IP stack like any ping. The reply is taken off the
// inbound path before the device sees it, so the local stack never gets an
// echo reply it did not ask for; echoes and replies count as traffic and pass
// the policy as any other packets do. While no ping waits, the inbound path
// pays one atomic load per packet for this.

// PingResult is one echo's answer.
type PingResult struct {
	Peer     string        `json:"peer"`
	Addr     netip.Addr    `json:"addr"`
	Path     string        `json:"path"`          // "direct" or "via NAME"
	Relays   []string      `json:"relays"`        // the neighbour handed the packet, if not the peer itself
	Hops     int           `json:"hops"`          // overlay hops to the peer on this path
	Endpoint string        `json:"endpoint"`      // underlay address the echo was sent to
	RTT      time.Duration `json:"rtt_ns"`        // 0 when there was no reply
	Err      string        `json:"err,omitempty"` // why there was no reply
}

// PingPaths are the paths Ping can take.
const (
	PathRoute     = "route"     // the way traffic to the peer goes now
	PathAlternate = "alternate" // the routing table's loop-free alternate
)

var (
	// ErrNoSuchPeer is a ping to something that is not a peer.
	ErrNoSuchPeer = errors.New("node: no such peer")
	// ErrNoAlternate is a ping on the alternate path where there is none.
	ErrNoAlternate = errors.New("node: no alternate path to the peer")
)

// pinger matches echo replies to waiting pings.
type pinger struct {
	waiting atomic.Int32 // pings in flight: the inbound path looks only when > 0
	mu      sync.Mutex
	replies map[uint32]chan time.Time // id<<16 | seq → the waiter
}

// FindPeer returns a peer by name, overlay address or ID (or a unique ID
// prefix of at least 4 hex digits).
func (n *Node) FindPeer(target string) (*Peer, error) {
	peers := n.peers.Load()
	if a, err := netip.ParseAddr(target); err == nil {
		if p := peers.byAddr[a.Unmap()]; p != nil {
			return p, nil
		}
		return nil, fmt.Errorf("%w: no peer has address %s", ErrNoSuchPeer, a)
	}
	var found *Peer
	for id, p := range peers.byID {
		if p.Name() == target {
			return p, nil
		}
		if len(target) >= 4 && strings.HasPrefix(id.String(), strings.ToLower(target)) {
			if found != nil {
				return nil, fmt.Errorf("%w: ID prefix %q is ambiguous", ErrNoSuchPeer, target)
			}
			found = p
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoSuchPeer, target)
	}
	return found, nil
}

// Ping sends one echo request to peer p on the given path (PathRoute or
// PathAlternate) and waits for the reply until ctx ends. A handshake the
// path needs first is started and waited for.
func (n *Node) Ping(ctx context.Context, p *Peer, path string, seq uint16) (PingResult, error) {
	res := PingResult{Peer: p.Name()}
	src, dst, ok := n.pingAddrs(p)
	if !ok {
		return res, fmt.Errorf("node: %s and this node share no address family", p.Name())
	}
	res.Addr = dst
	var id [2]byte
	rand.Read(id[:])
	key := uint32(binary.BigEndian.Uint16(id[:]))<<16 | uint32(seq)
	pkt := echoRequest(src, dst, binary.BigEndian.Uint16(id[:]), seq)

	// Wait for the sessions the path needs.
	for {
		via, err := n.pingVia(p, path)
		if err != nil {
			return res, err
		}
		ready := p.current.Load() != nil && (via == nil || via.current.Load() != nil)
		if ready {
			break
		}
		n.kick(p)
		if via != nil {
			n.kick(via)
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("node: no session with %s: %w", p.Name(), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}

	reply := make(chan time.Time, 1)
	n.ping.mu.Lock()
	if n.ping.replies == nil {
		n.ping.replies = map[uint32]chan time.Time{}
	}
	n.ping.replies[key] = reply
	n.ping.mu.Unlock()
	n.ping.waiting.Add(1)
	defer func() {
		n.ping.waiting.Add(-1)
		n.ping.mu.Lock()
		delete(n.ping.replies, key)
		n.ping.mu.Unlock()
	}()

	now := n.now()
	via, err := n.pingVia(p, path)
	if err != nil {
		return res, err
	}
	buf := make([]byte, headroom+len(pkt)+2*wire.TagSize)
	copy(buf[headroom:], pkt)
	msg, err := n.sealVia(p, via, buf, len(pkt), new(session.RelayScratch), now)
	if err != nil {
		return res, fmt.Errorf("node: ping %s: %w", p.Name(), err)
	}
	res.Endpoint = msg.Addr.String()
	res.Path, res.Hops = "direct", 1
	if via != nil && via != p {
		res.Path, res.Relays = "via "+via.Name(), []string{via.Name()}
		res.Hops = n.routeHops(p.id, via.id)
	}
	n.fw.noteOutbound(pkt, now) // the reply passes the policy as any reply does
	start := time.Now()
	if err := n.cfg.Conn.WriteBatch([]transport.Message{msg}); err != nil {
		return res, fmt.Errorf("node: ping %s: %w", p.Name(), err)
	}
	p.txPackets.Add(1)
	p.txBytes.Add(uint64(len(pkt)))
	n.stats.TxPackets.Add(1)
	n.stats.TxBytes.Add(uint64(len(pkt)))
	select {
	case at := <-reply:
		res.RTT = at.Sub(start)
		return res, nil
	case <-ctx.Done():
		res.Err = "no reply"
		return res, fmt.Errorf("node: no reply from %s (%s): %w", p.Name(), res.Path, ctx.Err())
	}
}

// pingVia is the neighbour a ping on path goes through (nil: straight to p).
func (n *Node) pingVia(p *Peer, path string) (*Peer, error) {
	switch path {
	case PathRoute, "":
		if p.direct() {
			return nil, nil
		}
		return n.nextHop(p.id, identity.NodeID{}), nil
	case PathAlternate:
		r, ok := n.mesh.table.Load().Lookup(p.id)
		if !ok || !r.HasAlt {
			return nil, fmt.Errorf("%w: %s", ErrNoAlternate, p.Name())
		}
		via := n.peers.Load().byID[r.Alt]
		if via == nil {
			return nil, fmt.Errorf("%w: %s", ErrNoAlternate, p.Name())
		}
		return via, nil
	}
	return nil, fmt.Errorf("node: unknown ping path %q (route, alternate)", path)
}

// routeHops is the hop count to dst when the first hop is via: the route's,
// or one more than the relay's own distance for the alternate.
func (n *Node) routeHops(dst, via identity.NodeID) int {
	r, ok := n.mesh.table.Load().Lookup(dst)
	if ok && r.Next == via {
		return r.Hops
	}
	return 2
}

// pingAddrs picks the source and destination of an echo: IPv4 if both
// nodes have it, else IPv6.
func (n *Node) pingAddrs(p *Peer) (src, dst netip.Addr, ok bool) {
	for _, v4 := range []bool{true, false} {
		src, dst = netip.Addr{}, netip.Addr{}
		for _, a := range n.cfg.Cert.Addrs {
			if a.Addr().Is4() == v4 {
				src = a.Addr()
				break
			}
		}
		for _, a := range p.addrs {
			if a.Is4() == v4 {
				dst = a
				break
			}
		}
		if src.IsValid() && dst.IsValid() {
			return src, dst, true
		}
	}
	return netip.Addr{}, netip.Addr{}, false
}

// echoPayload marks our echoes; the peer's stack sends it back.
var echoPayload = []byte("x0t mesh ping")

func echoRequest(src, dst netip.Addr, id, seq uint16) []byte {
	msg := make([]byte, 8+len(echoPayload))
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	copy(msg[8:], echoPayload)
	if src.Is4() {
		msg[0] = 8
		binary.BigEndian.PutUint16(msg[2:], overlay.TransportChecksum(netip.Addr{}, netip.Addr{}, overlay.ProtoICMP, msg))
		return overlay.PacketIPv4(src, dst, overlay.ProtoICMP, msg)
	}
	msg[0] = 128
	binary.BigEndian.PutUint16(msg[2:], overlay.TransportChecksum(src, dst, overlay.ProtoICMPv6, msg))
	return overlay.PacketIPv6(src, dst, overlay.ProtoICMPv6, msg)
}

// takePingReply reports whether pt is the echo reply a ping waits for, and
// hands it over. Called on the inbound path only while pings wait.
func (n *Node) takePingReply(pt []byte) bool {
	var icmp []byte
	switch {
	case len(pt) >= 28 && pt[0]>>4 == 4 && pt[9] == overlay.ProtoICMP:
		ihl := int(pt[0]&0x0f) * 4
		if len(pt) < ihl+8 || pt[ihl] != 0 {
			return false
		}
		icmp = pt[ihl:]
	case len(pt) >= 48 && pt[0]>>4 == 6 && pt[6] == overlay.ProtoICMPv6 && pt[40] == 129:
		icmp = pt[40:]
	default:
		return false
	}
	if string(icmp[8:]) != string(echoPayload) {
		return false
	}
	key := uint32(binary.BigEndian.Uint16(icmp[4:]))<<16 | uint32(binary.BigEndian.Uint16(icmp[6:]))
	n.ping.mu.Lock()
	ch := n.ping.replies[key]
	n.ping.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case ch <- time.Now():
	default:
	}
	return true
}
