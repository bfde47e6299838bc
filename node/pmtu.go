package node

import (
	"errors"
	"net/netip"

	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/wire"
)

// Path MTU through the mesh. A packet that travels through a relay carries a
// second layer on top of its own header and tag (forward header, link header
// and link tag: wrapOverhead bytes), so a packet that fits the device MTU on
// a direct path may not fit the underlay when it must be relayed. The node
// then answers as a router does: the packet is dropped and its sender gets an
// ICMP "packet too big" with the relayed path's MTU, so its stack sends
// smaller packets to that destination only; direct paths keep the full MTU.
// (Letting the underlay fragment instead would halve throughput at best: a
// batched UDP GSO send over the MTU fails outright.)

// DefaultUnderlayMTU is the underlay's MTU unless configured: Ethernet's.
const DefaultUnderlayMTU = 1500

const (
	directOverhead = wire.DataHeaderSize + wire.TagSize
	wrapOverhead   = wire.RelayHeaderSize // a relayed packet's link layer
)

var errTooBig = errors.New("node: packet too big for the relayed path")

// udpIPHeader is the IP and UDP header size of a datagram to ep.
func udpIPHeader(ep netip.AddrPort) int {
	if ep.Addr().Is4() || ep.Addr().Is4In6() {
		return 20 + 8
	}
	return 40 + 8
}

// relayMTU is the largest overlay packet that fits one relayed datagram to
// the next hop at ep.
func (n *Node) relayMTU(ep netip.AddrPort) int {
	return n.underlayMTU - udpIPHeader(ep) - directOverhead - wrapOverhead
}

// packetTooBig tells the sender of pkt, a packet for peer dst that was too
// big for its relayed path, the path's MTU: an ICMP error from the next hop's
// overlay address (a router on the path; our own address would be refused by
// the local stack as a martian source) written to the device.
func (n *Node) packetTooBig(o *outbound, dst *Peer, pkt []byte) {
	via := n.nextHop(dst.id, [len(dst.id)]byte{})
	if via == nil {
		return
	}
	ep := via.endpoint.Load()
	if ep == nil {
		return
	}
	var src netip.Addr
	v4 := pkt[0]>>4 == 4
	for _, a := range via.addrs {
		if a.Is4() == v4 {
			src = a
			break
		}
	}
	l := overlay.PacketTooBig(o.ptb[0][offset:], src, pkt, n.relayMTU(*ep))
	if l == 0 {
		return
	}
	bufs := o.ptbBufs[:1]
	bufs[0] = o.ptb[0][:offset+l]
	if _, err := n.cfg.Device.Write(bufs, offset); err != nil && !closedErr(err) {
		n.log.Debug("writing packet-too-big", "err", err)
		return
	}
	n.stats.PacketTooBigSent.Add(1)
}
