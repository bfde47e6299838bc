package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/linkmon"
	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/session"
	"github.com/x0tta6bl4/x0t/transport"
	"github.com/x0tta6bl4/x0t/wire"
	"golang.zx2c4.com/wireguard/tun"
)

// Buffer layout. A packet from the device is read at headroom, so that it can
// be sealed in place for its destination (e2e header just before it) and, when
// it travels through the mesh, wrapped for the next hop (a relayed packet's
// link layer before that, wire.RelayHeaderSize) without a copy:
//
//	0        16               36         52           68
//	| link   | forward header | link tag | e2e header | IP packet ... | e2e tag |
//
// A packet to a direct peer uses only the e2e part, starting at 52.
const (
	offset   = wire.DataHeaderSize                        // where received plaintext starts
	headroom = wire.RelayHeaderSize + wire.DataHeaderSize // where packets from the device start
	e2eStart = wire.RelayHeaderSize
)

func closedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed)
}

// Errors of encap: why a packet could not be sent now.
var (
	errNoSession = errors.New("node: no session with the peer")
	errNoRoute   = errors.New("node: no route to the peer")
)

// encap seals buf, which holds a packet of plen bytes at buf[headroom:], for
// peer p, and returns the datagram to send. When p is not reached directly, the
// sealed packet is wrapped for the next hop as a relayed packet (type 6), whose
// link layer is sealed with that link's session (ad is the caller's scratch
// for it): relays see the destination, nothing else. It does not allocate.
func (n *Node) encap(p *Peer, buf []byte, plen int, ad *session.RelayScratch, now time.Time) (transport.Message, error) {
	var via *Peer
	if !p.direct() {
		via = n.nextHop(p.id, identity.NodeID{})
	}
	return n.sealVia(p, via, buf, plen, ad, now)
}

// sealVia is encap with the first hop chosen: nil (or p) sends straight to p.
func (n *Node) sealVia(p, via *Peer, buf []byte, plen int, ad *session.RelayScratch, now time.Time) (transport.Message, error) {
	kp := p.current.Load()
	if kp == nil || kp.Expired(now) {
		return transport.Message{}, errNoSession
	}
	if via == nil || via == p {
		// Direct: the link lives, or it is the only way there is (better a
		// packet into a link judged dead than none at all).
		ep := p.endpoint.Load()
		if ep == nil {
			return transport.Message{}, errNoRoute
		}
		l, err := kp.Seal(buf[e2eStart:], plen, now)
		if err != nil {
			return transport.Message{}, errNoSession
		}
		return transport.Message{Buf: buf[e2eStart : e2eStart+l], N: l, Addr: *ep}, nil
	}
	vkp, vep := via.current.Load(), via.endpoint.Load()
	if vkp == nil || vep == nil || vkp.Expired(now) {
		return transport.Message{}, errNoRoute
	}
	if plen > n.relayMTU(*vep) {
		return transport.Message{}, errTooBig
	}
	l, err := kp.Seal(buf[e2eStart:], plen, now)
	if err != nil {
		return transport.Message{}, errNoSession
	}
	wire.PutForwardHeader(buf[offset:], wire.DefaultHopLimit, p.id)
	l += e2eStart
	if err := vkp.SealRelay(buf[:l], ad, now); err != nil {
		return transport.Message{}, errNoRoute
	}
	via.lastSent.Store(now.UnixNano())
	return transport.Message{Buf: buf[:l], N: l, Addr: *vep}, nil
}

// nextHop is the neighbour to hand a packet for dst to: the routing table's
// next hop if its link is live, else its loop-free alternate. from is the
// neighbour the packet came from (zero for our own traffic).
func (n *Node) nextHop(dst, from identity.NodeID) *Peer {
	peers := n.peers.Load()
	id, ok := n.mesh.table.Load().NextHop(dst, from, func(id identity.NodeID) bool {
		q := peers.byID[id]
		return q != nil && q.direct() && q.current.Load() != nil
	})
	if !ok {
		return nil
	}
	return peers.byID[id]
}

// outbound holds the outbound loop's reusable buffers.
type outbound struct {
	bufs  [][]byte
	sizes []int
	msgs  []transport.Message

	ptb, ptbBufs [][]byte // an ICMP packet-too-big on its way to the device
	relayAD      session.RelayScratch
}

func (n *Node) newOutbound() *outbound {
	batch := n.cfg.Device.BatchSize()
	o := &outbound{bufs: make([][]byte, batch), sizes: make([]int, batch), msgs: make([]transport.Message, 0, batch),
		ptb: [][]byte{make([]byte, offset+overlay.PacketTooBigLen)}, ptbBufs: make([][]byte, 1)}
	for i := range o.bufs {
		o.bufs[i] = make([]byte, headroom+n.mtu+2*wire.TagSize)
	}
	return o
}

// outboundLoop moves packets from the device to peers.
func (n *Node) outboundLoop() error {
	o := n.newOutbound()
	bp := n.newBusyPoll(n.cfg.Device)
	for {
		bp.wait()
		k, err := n.cfg.Device.Read(o.bufs, o.sizes, headroom)
		if err != nil {
			switch {
			case n.isClosed() || closedErr(err):
				return nil
			case errors.Is(err, tun.ErrTooManySegments):
				// A TSO super-packet needed more buffers than a batch has: it is
				// lost (TCP resends it), the device is fine.
				n.stats.DropMalformed.Add(1)
			case k == 0:
				return fmt.Errorf("node: device read: %w", err)
			}
		}
		n.sealBatch(o, k, n.now())
		if k > 0 {
			bp.moved()
		}
	}
}

// sealBatch seals the first k packets of o and sends them. It does not allocate
// unless a packet must wait for a handshake.
func (n *Node) sealBatch(o *outbound, k int, now time.Time) {
	peers := n.peers.Load()
	o.msgs = o.msgs[:0]
	var bytes uint64
	toldTooBig := false
	for i := range k {
		size := o.sizes[i]
		if size > n.mtu {
			// Only a device that ignores its MTU hands us this; the buffer
			// has no room to seal it.
			n.stats.DropMalformed.Add(1)
			continue
		}
		pkt := o.bufs[i][headroom : headroom+size]
		dst, ok := overlay.ParseDst(pkt)
		if !ok {
			n.stats.DropMalformed.Add(1)
			continue
		}
		p := peers.byAddr[dst]
		if p == nil {
			n.stats.DropNoRoute.Add(1)
			continue
		}
		n.fw.noteOutbound(pkt, now) // before sealing encrypts pkt in place
		m, err := n.encap(p, o.bufs[i], size, &o.relayAD, now)
		switch {
		case errors.Is(err, errNoRoute):
			n.stats.DropNoRoute.Add(1)
			continue
		case errors.Is(err, errTooBig):
			n.stats.DropTooBig.Add(1)
			if !toldTooBig { // one answer per batch: a burst is one event
				n.packetTooBig(o, p, pkt)
				toldTooBig = true
			}
			continue
		case err != nil:
			if !p.stage(pkt) {
				n.stats.DropStageFull.Add(1)
			}
			n.kick(p)
			continue
		}
		o.msgs = append(o.msgs, m)
		p.txPackets.Add(1)
		p.txBytes.Add(uint64(size))
		p.lastSent.Store(now.UnixNano())
		bytes += uint64(size)
		if rekeyDue(p.current.Load(), now) {
			n.kick(p)
		}
	}
	if len(o.msgs) == 0 {
		return
	}
	n.stats.TxPackets.Add(uint64(len(o.msgs)))
	n.stats.TxBytes.Add(bytes)
	if err := n.cfg.Conn.WriteBatch(o.msgs); err != nil && !closedErr(err) {
		n.log.Debug("send failed", "err", err)
	}
}

// inbound holds the inbound loop's reusable buffers. Datagrams are read as
// views of the conn's buffers (transport.Conn's view mode) and opened in
// place: a relayed packet leaves as it came, without a copy; an IP packet for
// the device is copied once, into dev, whose room lets the device coalesce a
// batch of TCP segments (TUN GRO).
type inbound struct {
	msgs    []transport.Message
	dev     [][]byte
	tunBufs [][]byte
	out     []transport.Message // relayed packets and probe replies
	lastIdx uint32
	last    indexEntry
	relayAD session.RelayScratch
}

func (n *Node) newInbound() *inbound {
	batch := n.cfg.Conn.BatchSize()
	in := &inbound{msgs: make([]transport.Message, batch), dev: make([][]byte, batch),
		tunBufs: make([][]byte, 0, batch), out: make([]transport.Message, 0, batch)}
	for i := range in.dev {
		in.dev[i] = make([]byte, transport.MaxSegmentBuf)
	}
	return in
}

// read reads a batch of datagrams as views.
func (in *inbound) read(c transport.Conn) (int, error) {
	in.msgs[0].Buf = nil
	return c.ReadBatch(in.msgs)
}

// toDevice queues IP packet ipt for the device, copied to a device buffer.
func (in *inbound) toDevice(ipt []byte) {
	b := in.dev[len(in.tunBufs)]
	in.tunBufs = append(in.tunBufs, b[:offset+copy(b[offset:], ipt)])
}

// inboundLoop moves datagrams from the underlay to the device, the next hop
// or the control loop.
func (n *Node) inboundLoop() error {
	in := n.newInbound()
	bp := n.newBusyPoll(n.cfg.Conn)
	for {
		bp.wait()
		k, err := in.read(n.cfg.Conn)
		if err != nil {
			if n.isClosed() || closedErr(err) {
				return nil
			}
			n.log.Debug("receive failed", "err", err)
			continue
		}
		forwarded := n.stats.Forwarded.Load()
		n.openBatch(in, k, n.now())
		if len(in.tunBufs) > 0 || n.stats.Forwarded.Load() != forwarded {
			bp.moved()
		}
	}
}

// openBatch processes the first k received datagrams. Data packets are opened in
// place; packets for us are written to the device in one batch, packets for
// others are sealed in place for the next hop and sent in one batch. It does
// not allocate for data packets.
func (n *Node) openBatch(in *inbound, k int, now time.Time) {
	in.tunBufs = in.tunBufs[:0]
	in.out = in.out[:0]
	in.last = indexEntry{}
	for i := range k {
		m := &in.msgs[i]
		b := m.Buf[:m.N]
		switch wire.PacketType(b) {
		case wire.TypeData:
			p, pt, ok := n.openSession(in, b, now)
			if !ok {
				if p == nil {
					select {
					case n.unknown <- m.Addr:
					default:
					}
				}
				continue
			}
			p.setEndpoint(m.Addr) // roaming: an authenticated packet says where the peer is
			n.onLink(in, p, m, pt, now)
		case wire.TypeRelay:
			if p := n.onRelay(in, m, b, now); p == nil {
				select {
				case n.unknown <- m.Addr:
				default:
				}
			}
		case wire.TypeDeliver:
			// The sender is the relay, not the peer whose index it names: an
			// unknown index says nothing about it, and its address is not the
			// peer's (no roaming).
			e2e, err := wire.ParseDeliver(b)
			if err != nil {
				n.stats.DropMalformed.Add(1)
				continue
			}
			n.deliver(in, e2e, now)
		case wire.TypeFragment, wire.TypeInitiation, wire.TypeResponse, wire.TypeCookieReply:
			n.enqueueFront(inboundMsg{data: append([]byte(nil), b...), src: m.Addr})
		default:
			n.stats.DropMalformed.Add(1)
		}
	}
	if len(in.tunBufs) > 0 {
		if _, err := n.cfg.Device.Write(in.tunBufs, offset); err != nil && !closedErr(err) {
			n.log.Debug("device write failed", "err", err)
		}
	}
	if len(in.out) > 0 {
		if err := n.cfg.Conn.WriteBatch(in.out); err != nil && !closedErr(err) {
			n.log.Debug("relay send failed", "err", err)
		}
	}
}

// openSession authenticates a data packet (header, AEAD, replay window) in
// place. It returns the peer and the plaintext; a nil peer with !ok means the
// receiver index is unknown.
func (n *Node) openSession(in *inbound, b []byte, now time.Time) (*Peer, []byte, bool) {
	idx, counter, err := wire.ParseDataHeader(b)
	if err != nil {
		n.stats.DropMalformed.Add(1)
		return nil, nil, false
	}
	e, ok := n.lookupIndex(in, idx)
	if !ok {
		return nil, nil, false
	}
	pt, err := e.kp.Open(b, counter, now)
	if !n.opened(e, err, now) {
		return e.peer, nil, false
	}
	return e.peer, pt, true
}

// lookupIndex finds the keypair for a receiver index (the batch's last one
// first: a batch usually comes from one peer).
func (n *Node) lookupIndex(in *inbound, idx uint32) (indexEntry, bool) {
	e := in.last
	if e.kp == nil || idx != in.lastIdx {
		var ok bool
		if e, ok = n.index.lookup(idx); !ok || e.kp == nil {
			n.stats.DropUnknownSession.Add(1)
			return indexEntry{}, false
		}
		in.last, in.lastIdx = e, idx
	}
	return e, true
}

// opened records the outcome of opening a packet on e's keypair: a failure is
// counted against the peer; a success is news from it, and confirms its
// next keypair.
func (n *Node) opened(e indexEntry, err error, now time.Time) bool {
	if err != nil {
		n.stats.countOpenError(err)
		if errors.Is(err, session.ErrReplay) {
			e.peer.faults.replays.Add(1)
		} else {
			e.peer.faults.badAEAD.Add(1)
		}
		return false
	}
	e.peer.lastRecv.Store(now.UnixNano())
	if e.peer.next.Load() == e.kp {
		n.confirm(e.peer, e.kp)
	}
	return true
}

// onRelay handles a relayed data packet (type 6) from a neighbour: its link
// layer is opened here; a packet for us is then opened end to end, a packet
// for another node gets its hop limit decremented and is sealed for the next
// link in place, or handed over bare (type 7) if that link is the last. It
// returns the neighbour, nil when the header is malformed or its receiver
// index unknown (as openSession). It does not allocate.
func (n *Node) onRelay(in *inbound, m *transport.Message, b []byte, now time.Time) *Peer {
	idx, counter, err := wire.ParseRelayHeader(b)
	if err != nil {
		n.stats.DropMalformed.Add(1)
		return nil
	}
	e, ok := n.lookupIndex(in, idx)
	if !ok {
		return nil
	}
	from := e.peer
	if !n.opened(e, e.kp.OpenRelay(b, counter, &in.relayAD, now), now) {
		return from
	}
	from.setEndpoint(m.Addr)
	const fh = wire.DataHeaderSize + wire.ForwardHeaderSize
	hop, dst, err := wire.ParseForwardHeader(b[wire.DataHeaderSize:fh])
	if err != nil {
		n.stats.DropMalformed.Add(1)
		return from
	}
	if identity.NodeID(dst) == n.ID() {
		n.deliver(in, b[wire.RelayHeaderSize:], now)
		return from
	}
	via, kp, ep, ok := n.relayTo(dst, from, hop)
	if !ok {
		return from
	}
	if via.id == identity.NodeID(dst) {
		// The last hop: the destination authenticates the end-to-end packet
		// itself and nothing of the link's is left to hide or check, so the
		// link layer gives way to a bare header (type 7). It does not count
		// as traffic on the link: its keepalives must go on.
		const cut = wire.RelayHeaderSize - wire.DeliverHeaderSize
		wire.PutDeliverHeader(b[cut:])
		n.stats.Forwarded.Add(1)
		in.out = append(in.out, transport.Message{Buf: m.Buf[cut:len(b)], N: len(b) - cut, Addr: *ep})
		return from
	}
	b[wire.DataHeaderSize+1] = hop - 1
	if err := kp.SealRelay(b, &in.relayAD, now); err != nil {
		n.stats.DropNoRoute.Add(1)
		return from
	}
	via.lastSent.Store(now.UnixNano())
	n.stats.Forwarded.Add(1)
	in.out = append(in.out, transport.Message{Buf: m.Buf[:len(b)], N: len(b), Addr: *ep})
	return from
}

// deliver opens an end-to-end data packet that came through the mesh, e2e,
// and passes the IP packet in it to the device. Keepalives through the mesh
// end here; failures are counted by openSession, anything else but an IP
// packet as malformed (link messages never travel end to end).
func (n *Node) deliver(in *inbound, e2e []byte, now time.Time) {
	p, ipt, ok := n.openSession(in, e2e, now)
	if !ok || len(ipt) == 0 {
		return
	}
	if !wire.IsIPPacket(ipt) {
		n.stats.DropMalformed.Add(1)
		return
	}
	if n.acceptIP(p, ipt, now) {
		in.toDevice(ipt)
	}
}

// onLink handles the plaintext of a packet from a direct neighbour: an IP
// packet for us, a packet to relay or unwrap, or a link message.
func (n *Node) onLink(in *inbound, p *Peer, m *transport.Message, pt []byte, now time.Time) {
	switch {
	case len(pt) == 0: // keepalive
	case wire.IsIPPacket(pt):
		if n.acceptIP(p, pt, now) {
			in.toDevice(pt)
		}
	case pt[0] == wire.LinkForward:
		n.onForward(in, p, m, pt, now)
	case pt[0] == linkmon.TypeProbe && len(pt) == linkmon.MessageSize:
		// Answer at once, from the packet loop, so the neighbour measures the
		// link and not our scheduling.
		kp := p.current.Load()
		if kp == nil {
			return
		}
		pt[0] = linkmon.TypeReply
		if l, err := kp.Seal(m.Buf, len(pt), now); err == nil {
			in.out = append(in.out, transport.Message{Buf: m.Buf[:l], N: l, Addr: m.Addr})
		}
	case pt[0] < 0x40:
		select {
		case n.linkMsgs <- linkMsg{from: p, data: append([]byte(nil), pt...)}:
		default:
			// The routing queue overflows: someone sends far more link
			// messages than any honest neighbour; charge the sender.
			n.stats.DropQueueFull.Add(1)
			p.faults.flooded.Add(1)
		}
	default:
		n.stats.DropMalformed.Add(1)
	}
}

// acceptIP applies the receive checks to an IP packet from peer p: its source
// address must be the peer's (cryptokey routing) and the policy must allow it.
func (n *Node) acceptIP(p *Peer, pt []byte, now time.Time) bool {
	src, ok := overlay.ParseSrc(pt)
	if !ok {
		n.stats.DropMalformed.Add(1)
		return false
	}
	if !p.owns(src) {
		n.stats.DropSpoofedSource.Add(1)
		return false
	}
	if !n.fw.allowInbound(pt, now) {
		n.stats.DropPolicy.Add(1)
		return false
	}
	p.rxPackets.Add(1)
	p.rxBytes.Add(uint64(len(pt)))
	n.stats.RxPackets.Add(1)
	n.stats.RxBytes.Add(uint64(len(pt)))
	if n.ping.waiting.Load() > 0 && n.takePingReply(pt) {
		return false // an answer to `x0t ping`, not for the device
	}
	return true
}

// onForward handles a forwarded datagram that neighbour from handed us: for us,
// it is unwrapped and processed as if received; for another node, it is sealed
// in place for the next hop.
func (n *Node) onForward(in *inbound, from *Peer, m *transport.Message, pt []byte, now time.Time) {
	hop, dst, inner, err := wire.ParseForward(pt)
	if err != nil {
		n.stats.DropMalformed.Add(1)
		return
	}
	if identity.NodeID(dst) == n.ID() { // a handshake fragment or cookie reply, end to end
		n.enqueueFront(inboundMsg{data: append([]byte(nil), inner...), src: meshAddr(from.id), from: from.id, forwarded: true})
		return
	}
	via, kp, ep, ok := n.relayTo(dst, from, hop)
	if !ok {
		return
	}
	pt[1] = hop - 1
	l, err := kp.Seal(m.Buf, len(pt), now)
	if err != nil {
		n.stats.DropNoRoute.Add(1)
		return
	}
	via.lastSent.Store(now.UnixNano())
	n.stats.Forwarded.Add(1)
	in.out = append(in.out, transport.Message{Buf: m.Buf[:l], N: l, Addr: *ep})
}

// relayTo picks the next hop for a packet to dst that neighbour from handed
// us with hop limit hop, and that hop's keypair and endpoint. A spent hop
// limit or a missing route is counted and reported as !ok.
func (n *Node) relayTo(dst identity.NodeID, from *Peer, hop uint8) (*Peer, *session.Keypair, *netip.AddrPort, bool) {
	if hop <= 1 {
		n.stats.DropHopLimit.Add(1)
		return nil, nil, nil, false
	}
	via := n.nextHop(dst, from.id)
	if via == nil {
		n.stats.DropNoRoute.Add(1)
		return nil, nil, nil, false
	}
	kp, ep := via.current.Load(), via.endpoint.Load()
	if kp == nil || ep == nil {
		n.stats.DropNoRoute.Add(1)
		return nil, nil, nil, false
	}
	return via, kp, ep, true
}

// meshAddr stands for a neighbour where the front stage keys state by address
// (fragment reassembly, rate limits) for messages that came through the mesh.
func meshAddr(id identity.NodeID) netip.AddrPort {
	var a [16]byte
	copy(a[:], id[:])
	return netip.AddrPortFrom(netip.AddrFrom16(a), 0)
}

// confirm handles the first packet on a responder keypair: it becomes current,
// and packets that waited for it go out.
func (n *Node) confirm(p *Peer, kp *session.Keypair) {
	if p.confirm(kp) {
		n.kick(p) // the control loop flushes staged packets
	}
}
