package node

import (
	"bytes"
	"testing"

	"github.com/x0tta6bl4/x0t/session"
	"github.com/x0tta6bl4/x0t/transport"
	"github.com/x0tta6bl4/x0t/wire"
)

// TestRelayedPacketRefusals drives a relay (the middle of a line n0–n1–n2)
// by hand with relayed packets (type 6) from n0 for n2: a genuine one is
// forwarded and delivered; a replay, a changed link layer, a packet whose hop
// limit ran out and a truncated one are dropped at the relay and counted; a
// changed end-to-end payload passes the relay (it is not the link's to check)
// and is dropped and counted at the destination, never written to its device.
// The relay hands packets to the destination bare (type 7); there a replayed,
// changed, unknown or truncated one is dropped and counted too.
func TestRelayedPacketRefusals(t *testing.T) {
	m := newDPMesh(t, 3)
	src, relay, dst := m.nodes[0], m.nodes[1], m.nodes[2]
	from := m.conns[0].LocalAddr()
	var ad session.RelayScratch

	// sealed returns a relayed packet from n0 to n2 as n0 sends it.
	sealed := func() []byte {
		t.Helper()
		pkt := m.packet(0, 2)
		buf := make([]byte, headroom+len(pkt)+2*wire.TagSize)
		copy(buf[headroom:], pkt)
		msg, err := src.encap(m.peer(0, 2), buf, len(pkt), &ad, m.now)
		if err != nil {
			t.Fatal(err)
		}
		if wire.PacketType(msg.Buf) != wire.TypeRelay {
			t.Fatalf("n0 sent type %d to n2, want a relayed packet", wire.PacketType(msg.Buf))
		}
		return bytes.Clone(msg.Buf[:msg.N])
	}
	// toRelay hands b to the relay as if it came from n0.
	toRelay := func(b []byte) {
		in := m.ins[1]
		in.msgs[0] = transport.Message{Buf: bytes.Clone(b), N: len(b), Addr: from}
		relay.openBatch(in, 1, m.now)
	}
	// atDestination receives one datagram at n2, processes it and returns a
	// copy of it as it arrived.
	atDestination := func() []byte {
		t.Helper()
		if err := m.receive(2, 1); err != nil {
			t.Fatal(err)
		}
		msg := m.ins[2].msgs[0]
		got := bytes.Clone(msg.Buf[:msg.N])
		dst.openBatch(m.ins[2], 1, m.now)
		return got
	}
	type counts struct{ fwd, auth, replay, hop, malformed, rx, dstAuth, dstReplay, dstUnknown uint64 }
	read := func() counts {
		return counts{relay.stats.Forwarded.Load(), relay.stats.DropAuth.Load(), relay.stats.DropReplay.Load(),
			relay.stats.DropHopLimit.Load(), relay.stats.DropMalformed.Load(), dst.stats.RxPackets.Load(), dst.stats.DropAuth.Load(),
			dst.stats.DropReplay.Load(), dst.stats.DropUnknownSession.Load()}
	}

	genuine := sealed()
	before := read()
	toRelay(genuine)
	delivered := atDestination()
	if err := m.drain(2, 1); err != nil {
		t.Fatal(err)
	}
	if c := read(); c.fwd != before.fwd+1 || c.rx != before.rx+1 {
		t.Fatalf("genuine packet: forwarded %d→%d, delivered %d→%d", before.fwd, c.fwd, before.rx, c.rx)
	}
	// The last hop carries the end-to-end packet bare, and the destination
	// takes nothing from the relay's datagram: n0 keeps no address at n2.
	if want := genuine[wire.RelayHeaderSize-wire.DeliverHeaderSize:]; wire.PacketType(delivered) != wire.TypeDeliver ||
		!bytes.Equal(delivered[wire.DeliverHeaderSize:], want[wire.DeliverHeaderSize:]) {
		t.Fatalf("the relay handed over %x, want type 7 and the end-to-end packet %x", delivered, want[wire.DeliverHeaderSize:])
	}
	if ep := m.peer(2, 0).endpoint.Load(); ep != nil {
		t.Fatalf("n2 took %v, the relay's address, for n0's", *ep)
	}
	// toDestination hands b to n2 as if it came from the relay.
	toDestination := func(b []byte) {
		in := m.ins[2]
		in.msgs[0] = transport.Message{Buf: bytes.Clone(b), N: len(b), Addr: m.conns[1].LocalAddr()}
		dst.openBatch(in, 1, m.now)
	}
	// refused hands b over with give and checks that the counters moved as
	// want says and that nothing was forwarded or delivered.
	refused := func(name string, give func([]byte), b []byte, want func(before, after counts) bool) {
		t.Helper()
		before := read()
		give(b)
		if after := read(); !want(before, after) || after.fwd != before.fwd || after.rx != before.rx {
			t.Errorf("%s: counters %+v → %+v", name, before, after)
		}
	}
	refused("replayed type 7", toDestination, delivered, func(b, a counts) bool { return a.dstReplay == b.dstReplay+1 })
	bad := bytes.Clone(delivered)
	bad[len(bad)-1] ^= 1
	refused("changed type 7", toDestination, bad, func(b, a counts) bool { return a.dstAuth == b.dstAuth+1 })
	bad = bytes.Clone(delivered)
	bad[wire.DeliverHeaderSize+4] ^= 0xff // the receiver index
	refused("type 7 for an unknown index", toDestination, bad, func(b, a counts) bool { return a.dstUnknown == b.dstUnknown+1 })
	select {
	case addr := <-dst.unknown:
		t.Fatalf("a type 7 for an unknown index asked for a handshake with %v, the relay", addr)
	default:
	}
	malformed := dst.stats.DropMalformed.Load()
	toDestination(delivered[:wire.DeliverHeaderSize+wire.DataOverhead-1])
	if got := dst.stats.DropMalformed.Load(); got != malformed+1 {
		t.Errorf("truncated type 7: malformed drops %d → %d", malformed, got)
	}

	refused("replay", toRelay, genuine, func(b, a counts) bool { return a.replay == b.replay+1 })
	for _, i := range []int{9, 20, 40, wire.RelayHeaderSize + 4, len(genuine) - 1} {
		bad := sealed()
		bad[i] ^= 1
		refused("changed byte of the link layer or e2e header/tag", toRelay, bad, func(b, a counts) bool { return a.auth == b.auth+1 })
	}
	refused("truncated", toRelay, sealed()[:wire.RelayHeaderSize+wire.DataOverhead-1], func(b, a counts) bool { return a.malformed == b.malformed+1 })

	// Hop limit 1 on arrival: the relay may not pass it on.
	pkt := m.packet(0, 2)
	buf := make([]byte, headroom+len(pkt)+2*wire.TagSize)
	copy(buf[headroom:], pkt)
	l, err := m.peer(0, 2).current.Load().Seal(buf[e2eStart:], len(pkt), m.now)
	if err != nil {
		t.Fatal(err)
	}
	wire.PutForwardHeader(buf[offset:], 1, m.nodes[2].ID())
	if err := m.peer(0, 1).current.Load().SealRelay(buf[:e2eStart+l], &ad, m.now); err != nil {
		t.Fatal(err)
	}
	refused("hop limit", toRelay, buf[:e2eStart+l], func(b, a counts) bool { return a.hop == b.hop+1 })

	// A changed end-to-end ciphertext: forwarded, refused at the destination.
	bad = sealed()
	bad[wire.RelayHeaderSize+wire.DataHeaderSize+30] ^= 0x80
	before = read()
	toRelay(bad)
	atDestination()
	if c := read(); c.fwd != before.fwd+1 || c.dstAuth != before.dstAuth+1 || c.rx != before.rx {
		t.Fatalf("changed payload: forwarded %d→%d, destination auth drops %d→%d, delivered %d→%d",
			before.fwd, c.fwd, before.dstAuth, c.dstAuth, before.rx, c.rx)
	}
}

// FuzzInbound feeds arbitrary datagrams to the relay and to the destination of
// a line n0–n1–n2, as if they came from the neighbour before each. Only the
// genuine packets it starts from may ever be forwarded or delivered (each at
// most once), and nothing may panic.
func FuzzInbound(f *testing.F) {
	m := newDPMesh(f, 3)
	var ad session.RelayScratch
	pkt := m.packet(0, 2)
	buf := make([]byte, headroom+len(pkt)+2*wire.TagSize)
	copy(buf[headroom:], pkt)
	msg, err := m.nodes[0].encap(m.peer(0, 2), buf, len(pkt), &ad, m.now)
	if err != nil {
		f.Fatal(err)
	}
	relayed := bytes.Clone(msg.Buf[:msg.N])
	delivered := append([]byte{wire.TypeDeliver, 0, 0, 0}, relayed[wire.RelayHeaderSize:]...)
	genuine := map[string]bool{string(relayed): true, string(delivered): true}
	f.Add(relayed)
	f.Add(delivered)
	f.Add(relayed[wire.RelayHeaderSize:]) // the end-to-end packet as type 4
	f.Add([]byte{wire.TypeDeliver, 0, 0, 0})
	f.Add([]byte{wire.TypeRelay})
	relay, dst := m.nodes[1], m.nodes[2]
	fwd0, rx0 := relay.stats.Forwarded.Load(), dst.stats.RxPackets.Load()
	f.Fuzz(func(t *testing.T, b []byte) {
		for i := 1; i <= 2; i++ {
			n, in := m.nodes[i], m.ins[i]
			fwd, rx := n.stats.Forwarded.Load(), n.stats.RxPackets.Load()
			in.msgs[0] = transport.Message{Buf: bytes.Clone(b), N: len(b), Addr: m.conns[i-1].LocalAddr()}
			n.openBatch(in, 1, m.now)
			if !genuine[string(b)] && (n.stats.Forwarded.Load() != fwd || n.stats.RxPackets.Load() != rx) {
				t.Fatalf("n%d passed on a datagram that is not genuine: %x", i, b)
			}
		}
		// Both genuine packets carry one end-to-end packet: forwarded once by
		// the relay (type 6), delivered once (type 7).
		if fw, dl := relay.stats.Forwarded.Load()-fwd0, dst.stats.RxPackets.Load()-rx0; fw > 1 || dl > 1 {
			t.Fatalf("forwarded %d times, delivered %d times", fw, dl)
		}
	})
}
