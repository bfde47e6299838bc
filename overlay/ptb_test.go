package overlay

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

var (
	ptbHost4   = netip.MustParseAddr("100.64.0.1")
	ptbPeer4   = netip.MustParseAddr("100.64.0.3")
	ptbRouter4 = netip.MustParseAddr("100.64.0.2")
	ptbHost6   = netip.MustParseAddr("fd7a::1")
	ptbPeer6   = netip.MustParseAddr("fd7a::3")
	ptbRouter6 = netip.MustParseAddr("fd7a::2")
)

func tcpSegment(n int) []byte {
	seg := make([]byte, 20+n)
	binary.BigEndian.PutUint16(seg[0:], 40000)
	binary.BigEndian.PutUint16(seg[2:], 443)
	seg[12] = 5 << 4
	return seg
}

// checkICMP validates the message as a receiving stack would: header fields,
// both checksums, and the quote of the original packet.
func checkICMP(t *testing.T, msg, orig []byte, mtu int) {
	t.Helper()
	switch msg[0] >> 4 {
	case 4:
		if checksum(msg[:20], 0) != 0xffff {
			t.Fatal("bad IPv4 header checksum")
		}
		if int(binary.BigEndian.Uint16(msg[2:])) != len(msg) || len(msg) > 576 {
			t.Fatalf("total length %d, message %d", binary.BigEndian.Uint16(msg[2:]), len(msg))
		}
		icmp := msg[20:]
		if msg[9] != ProtoICMP || icmp[0] != 3 || icmp[1] != 4 {
			t.Fatalf("proto %d type %d code %d", msg[9], icmp[0], icmp[1])
		}
		if checksum(icmp, 0) != 0xffff {
			t.Fatal("bad ICMPv4 checksum")
		}
		if got := int(binary.BigEndian.Uint16(icmp[6:])); got != mtu {
			t.Fatalf("next-hop MTU %d, want %d", got, mtu)
		}
		if !bytes.Equal(msg[16:20], orig[12:16]) {
			t.Fatal("not addressed to the packet's sender")
		}
		if !bytes.Equal(icmp[8:], orig[:min(len(orig), 576-28)]) {
			t.Fatal("the quote is not as much of the packet as fits")
		}
	case 6:
		icmp := msg[40:]
		if msg[6] != ProtoICMPv6 || icmp[0] != 2 || icmp[1] != 0 || len(msg) > PacketTooBigLen {
			t.Fatalf("next header %d type %d code %d len %d", msg[6], icmp[0], icmp[1], len(msg))
		}
		if int(binary.BigEndian.Uint16(msg[4:])) != len(icmp) {
			t.Fatal("payload length")
		}
		src, dst := netip.AddrFrom16([16]byte(msg[8:24])), netip.AddrFrom16([16]byte(msg[24:40]))
		if checksum(icmp, pseudoHeaderSum(src, dst, ProtoICMPv6, len(icmp))) != 0xffff {
			t.Fatal("bad ICMPv6 checksum")
		}
		if got := int(binary.BigEndian.Uint32(icmp[4:])); got != mtu {
			t.Fatalf("MTU %d, want %d", got, mtu)
		}
		if !bytes.Equal(msg[24:40], orig[8:24]) {
			t.Fatal("not addressed to the packet's sender")
		}
		if !bytes.Equal(icmp[8:], orig[:min(len(orig), PacketTooBigLen-48)]) {
			t.Fatal("the quote is not as much of the packet as fits")
		}
	default:
		t.Fatal("not an IP packet")
	}
}

func TestPacketTooBig(t *testing.T) {
	out := make([]byte, PacketTooBigLen)
	tcp4 := PacketIPv4(ptbHost4, ptbPeer4, ProtoTCP, tcpSegment(1400))
	tcp6 := PacketIPv6(ptbHost6, ptbPeer6, ProtoTCP, tcpSegment(1400))
	small6 := PacketIPv6(ptbHost6, ptbPeer6, ProtoTCP, tcpSegment(10))
	echo4 := PacketIPv4(ptbHost4, ptbPeer4, ProtoICMP, []byte{8, 0, 0, 0, 0, 1, 0, 1})
	for _, c := range []struct {
		name string
		pkt  []byte
		src  netip.Addr
		mtu  int
	}{
		{"tcp/4", tcp4, ptbRouter4, 1388},
		{"echo/4", echo4, ptbRouter4, 1388},
		{"tcp/6", tcp6, ptbRouter6, 1368},
		{"short/6", small6, ptbRouter6, 1280},
	} {
		n := PacketTooBig(out, c.src, c.pkt, c.mtu)
		if n == 0 {
			t.Fatalf("%s: no message", c.name)
		}
		checkICMP(t, out[:n], c.pkt, c.mtu)
	}

	noDF := bytes.Clone(tcp4)
	noDF[6] = 0
	frag := bytes.Clone(tcp4)
	frag[7] = 10 // fragment offset 80
	err4 := PacketIPv4(ptbHost4, ptbPeer4, ProtoICMP, []byte{3, 4, 0, 0, 0, 0, 5, 0})
	err6 := PacketIPv6(ptbHost6, ptbPeer6, ProtoICMPv6, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	for _, c := range []struct {
		name string
		pkt  []byte
		src  netip.Addr
		mtu  int
	}{
		{"no DF", noDF, ptbRouter4, 1388},
		{"later fragment", frag, ptbRouter4, 1388},
		{"ICMPv4 error", err4, ptbRouter4, 1388},
		{"ICMPv6 error", err6, ptbRouter6, 1388},
		{"IPv4 mtu too small", tcp4, ptbRouter4, 67},
		{"IPv6 mtu too small", tcp6, ptbRouter6, 1279},
		{"family mismatch", tcp4, ptbRouter6, 1388},
		{"mapped source", tcp6, netip.AddrFrom16(ptbRouter4.As16()), 1388},
		{"garbage", []byte{0x45, 1, 2}, ptbRouter4, 1388},
		{"empty", nil, ptbRouter4, 1388},
	} {
		if n := PacketTooBig(out, c.src, c.pkt, c.mtu); n != 0 {
			t.Errorf("%s: a %d-byte message, want none", c.name, n)
		}
	}
	if n := PacketTooBig(out[:100], ptbRouter4, tcp4, 1388); n != 0 {
		t.Error("wrote into a short buffer")
	}
}

func TestPacketTooBigDoesNotAllocate(t *testing.T) {
	out := make([]byte, PacketTooBigLen)
	tcp4 := PacketIPv4(ptbHost4, ptbPeer4, ProtoTCP, tcpSegment(1400))
	tcp6 := PacketIPv6(ptbHost6, ptbPeer6, ProtoTCP, tcpSegment(1400))
	if a := testing.AllocsPerRun(100, func() {
		PacketTooBig(out, ptbRouter4, tcp4, 1388)
		PacketTooBig(out, ptbRouter6, tcp6, 1368)
	}); a != 0 {
		t.Fatalf("%.1f allocations", a)
	}
}

func FuzzPacketTooBig(f *testing.F) {
	f.Add(PacketIPv4(ptbHost4, ptbPeer4, ProtoTCP, tcpSegment(100)), uint16(1388))
	f.Add(PacketIPv6(ptbHost6, ptbPeer6, ProtoTCP, tcpSegment(100)), uint16(1280))
	f.Add([]byte{0x46, 0, 0, 20}, uint16(576))
	out := make([]byte, PacketTooBigLen)
	f.Fuzz(func(t *testing.T, pkt []byte, mtu uint16) {
		for _, src := range []netip.Addr{ptbRouter4, ptbRouter6} {
			if n := PacketTooBig(out, src, pkt, int(mtu)); n > 0 {
				checkICMP(t, out[:n], pkt, int(mtu))
			}
		}
	})
}
