package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/session"
	"github.com/x0tta6bl4/x0t/transport"
	"github.com/x0tta6bl4/x0t/wire"
	"golang.zx2c4.com/wireguard/tun"
)

// offset is where packets start in the loops' buffers: room for the data header
// so that sealing and opening happen in place.
const offset = wire.DataHeaderSize

func closedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed)
}

// outbound holds the outbound loop's reusable buffers.
type outbound struct {
	bufs  [][]byte
	sizes []int
	msgs  []transport.Message
}

func (n *Node) newOutbound() *outbound {
	batch := n.cfg.Device.BatchSize()
	o := &outbound{bufs: make([][]byte, batch), sizes: make([]int, batch), msgs: make([]transport.Message, 0, batch)}
	for i := range o.bufs {
		o.bufs[i] = make([]byte, offset+n.mtu+wire.TagSize)
	}
	return o
}

// outboundLoop moves packets from the device to peers.
func (n *Node) outboundLoop() error {
	o := n.newOutbound()
	for {
		k, err := n.cfg.Device.Read(o.bufs, o.sizes, offset)
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
	}
}

// sealBatch seals the first k packets of o and sends them. It does not allocate
// unless a packet must wait for a handshake.
func (n *Node) sealBatch(o *outbound, k int, now time.Time) {
	peers := n.peers.Load()
	o.msgs = o.msgs[:0]
	var bytes uint64
	for i := range k {
		size := o.sizes[i]
		pkt := o.bufs[i][offset : offset+size]
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
		n.fw.noteOutbound(pkt, now) // before Seal encrypts pkt in place
		kp := p.current.Load()
		ep := p.endpoint.Load()
		if kp == nil || ep == nil || kp.Expired(now) {
			if !p.stage(pkt) {
				n.stats.DropStageFull.Add(1)
			}
			n.kick(p)
			continue
		}
		l, err := kp.Seal(o.bufs[i], size, now)
		if err != nil {
			if !p.stage(pkt) {
				n.stats.DropStageFull.Add(1)
			}
			n.kick(p)
			continue
		}
		o.msgs = append(o.msgs, transport.Message{Buf: o.bufs[i][:l], N: l, Addr: *ep})
		p.txPackets.Add(1)
		p.txBytes.Add(uint64(size))
		p.lastSent.Store(now.UnixNano())
		bytes += uint64(size)
		if rekeyDue(kp, now) {
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

// inbound holds the inbound loop's reusable buffers.
type inbound struct {
	msgs    []transport.Message
	tunBufs [][]byte
	lastIdx uint32
	last    indexEntry
}

func (n *Node) newInbound() *inbound {
	batch := n.cfg.Conn.BatchSize()
	in := &inbound{msgs: make([]transport.Message, batch), tunBufs: make([][]byte, 0, batch)}
	for i := range in.msgs {
		in.msgs[i].Buf = make([]byte, transport.MaxSegmentBuf)
	}
	return in
}

// inboundLoop moves datagrams from the underlay to the device or the control loop.
func (n *Node) inboundLoop() error {
	in := n.newInbound()
	for {
		k, err := n.cfg.Conn.ReadBatch(in.msgs)
		if err != nil {
			if n.isClosed() || closedErr(err) {
				return nil
			}
			n.log.Debug("receive failed", "err", err)
			continue
		}
		n.openBatch(in, k, n.now())
	}
}

// openBatch processes the first k received datagrams. Data packets are opened in
// place and written to the device in one batch; it does not allocate for them.
func (n *Node) openBatch(in *inbound, k int, now time.Time) {
	in.tunBufs = in.tunBufs[:0]
	in.last = indexEntry{}
	for i := range k {
		m := &in.msgs[i]
		b := m.Buf[:m.N]
		switch wire.PacketType(b) {
		case wire.TypeData:
			if pt, ok := n.openData(in, b, m, now); ok {
				in.tunBufs = append(in.tunBufs, m.Buf[:offset+len(pt)])
			}
		case wire.TypeFragment, wire.TypeInitiation, wire.TypeResponse, wire.TypeCookieReply:
			select {
			case n.front <- inboundMsg{data: append([]byte(nil), b...), src: m.Addr}:
			default:
				n.stats.DropQueueFull.Add(1)
			}
		default:
			n.stats.DropMalformed.Add(1)
		}
	}
	if len(in.tunBufs) == 0 {
		return
	}
	if _, err := n.cfg.Device.Write(in.tunBufs, offset); err != nil && !closedErr(err) {
		n.log.Debug("device write failed", "err", err)
	}
}

// openData authenticates one data packet and returns its plaintext if it is an
// IP packet for the device.
func (n *Node) openData(in *inbound, b []byte, m *transport.Message, now time.Time) ([]byte, bool) {
	idx, counter, err := wire.ParseDataHeader(b)
	if err != nil {
		n.stats.DropMalformed.Add(1)
		return nil, false
	}
	e := in.last
	if e.kp == nil || idx != in.lastIdx {
		var ok bool
		if e, ok = n.index.lookup(idx); !ok || e.kp == nil {
			n.stats.DropUnknownSession.Add(1)
			select {
			case n.unknown <- m.Addr:
			default:
			}
			return nil, false
		}
		in.last, in.lastIdx = e, idx
	}
	pt, err := e.kp.Open(b, counter, now)
	if err != nil {
		n.stats.countOpenError(err)
		return nil, false
	}
	p := e.peer
	p.lastRecv.Store(now.UnixNano())
	p.setEndpoint(m.Addr)
	if p.next.Load() == e.kp {
		n.confirm(p, e.kp)
	}
	if len(pt) == 0 {
		return nil, false // keepalive
	}
	src, ok := overlay.ParseSrc(pt)
	if !ok {
		n.stats.DropMalformed.Add(1)
		return nil, false
	}
	if !p.owns(src) {
		n.stats.DropSpoofedSource.Add(1)
		return nil, false
	}
	if !n.fw.allowInbound(pt, now) {
		n.stats.DropPolicy.Add(1)
		return nil, false
	}
	p.rxPackets.Add(1)
	p.rxBytes.Add(uint64(len(pt)))
	n.stats.RxPackets.Add(1)
	n.stats.RxBytes.Add(uint64(len(pt)))
	return pt, true
}

// confirm handles the first packet on a responder keypair: it becomes current,
// and packets that waited for it go out.
func (n *Node) confirm(p *Peer, kp *session.Keypair) {
	if p.confirm(kp) {
		n.kick(p) // the control loop flushes staged packets
	}
}
