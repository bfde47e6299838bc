package overlay

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

var (
	v4a = netip.MustParseAddr("100.64.0.1")
	v4b = netip.MustParseAddr("100.64.0.2")
	v6a = netip.MustParseAddr("fd5e:1:2::1")
	v6b = netip.MustParseAddr("fd5e:1:2::2")
)

func TestPacketIPv4(t *testing.T) {
	payload := []byte("hello")
	pkt := PacketIPv4(v4a, v4b, ProtoUDP, payload)
	if len(pkt) != 20+len(payload) {
		t.Fatalf("len = %d", len(pkt))
	}
	if got := checksum(pkt[:20], 0); got != 0xffff {
		t.Errorf("header does not checksum to 0xffff: %#04x", got)
	}
	if tl := binary.BigEndian.Uint16(pkt[2:]); int(tl) != len(pkt) {
		t.Errorf("total length %d, want %d", tl, len(pkt))
	}
	if pkt[9] != ProtoUDP || pkt[8] != 64 {
		t.Errorf("proto %d ttl %d", pkt[9], pkt[8])
	}
	if !bytes.Equal(pkt[20:], payload) {
		t.Errorf("payload %q", pkt[20:])
	}
	// Known answer: the classic example header from RFC 1071 tutorials.
	h := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0,
		0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := ^checksum(h, 0); got != 0xb861 {
		t.Errorf("checksum = %#04x, want 0xb861", got)
	}
}

func TestPacketIPv6(t *testing.T) {
	payload := []byte("hello6")
	pkt := PacketIPv6(v6a, v6b, ProtoUDP, payload)
	if len(pkt) != 40+len(payload) || pkt[0]>>4 != 6 {
		t.Fatalf("bad packet % x", pkt)
	}
	if pl := binary.BigEndian.Uint16(pkt[4:]); int(pl) != len(payload) {
		t.Errorf("payload length %d", pl)
	}
	if pkt[6] != ProtoUDP || pkt[7] != 64 {
		t.Errorf("next header %d hop limit %d", pkt[6], pkt[7])
	}
}

func TestPacketUDPChecksum(t *testing.T) {
	for _, tc := range []struct{ src, dst netip.AddrPort }{
		{netip.AddrPortFrom(v4b, 5555), netip.AddrPortFrom(v4a, 7)},
		{netip.AddrPortFrom(v6b, 5555), netip.AddrPortFrom(v6a, 7)},
	} {
		pkt := PacketUDP(tc.src, tc.dst, []byte("odd-length payload!"))
		hl := 20
		if tc.src.Addr().Is6() {
			hl = 40
		}
		udp := pkt[hl:]
		// A correct checksum makes the sum over pseudo-header and segment 0xffff.
		sum := checksum(udp, pseudoHeaderSum(tc.src.Addr(), tc.dst.Addr(), ProtoUDP, len(udp)))
		if sum != 0xffff {
			t.Errorf("%v: UDP checksum does not verify: %#04x", tc.src, sum)
		}
		if s, ok := ParseSrc(pkt); !ok || s != tc.src.Addr() {
			t.Errorf("ParseSrc = %v %v", s, ok)
		}
		if d, ok := ParseDst(pkt); !ok || d != tc.dst.Addr() {
			t.Errorf("ParseDst = %v %v", d, ok)
		}
	}
}

func TestPacketPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"v4 with v6":  func() { PacketIPv4(v6a, v4b, 1, nil) },
		"v6 with v4":  func() { PacketIPv6(v4a, v6b, 1, nil) },
		"v6 4in6":     func() { PacketIPv6(netip.MustParseAddr("::ffff:1.2.3.4"), v6b, 1, nil) },
		"udp mixed":   func() { PacketUDP(netip.AddrPortFrom(v4a, 1), netip.AddrPortFrom(v6a, 1), nil) },
		"v4 too long": func() { PacketIPv4(v4a, v4b, 1, make([]byte, 65535)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestParseAddrs(t *testing.T) {
	v4 := PacketIPv4(v4a, v4b, ProtoICMP, nil)
	v6 := PacketIPv6(v6a, v6b, ProtoICMPv6, nil)
	badIHL := append([]byte(nil), v4...)
	badIHL[0] = 0x44
	for _, tc := range []struct {
		name     string
		pkt      []byte
		src, dst netip.Addr
		ok       bool
	}{
		{"ipv4", v4, v4a, v4b, true},
		{"ipv6", v6, v6a, v6b, true},
		{"nil", nil, netip.Addr{}, netip.Addr{}, false},
		{"short v4", v4[:19], netip.Addr{}, netip.Addr{}, false},
		{"short v6", v6[:39], netip.Addr{}, netip.Addr{}, false},
		{"ihl < 5", badIHL, netip.Addr{}, netip.Addr{}, false},
		{"version 5", append([]byte{0x50}, v6[1:]...), netip.Addr{}, netip.Addr{}, false},
	} {
		s, sok := ParseSrc(tc.pkt)
		d, dok := ParseDst(tc.pkt)
		if s != tc.src || d != tc.dst || sok != tc.ok || dok != tc.ok {
			t.Errorf("%s: src %v %v dst %v %v, want %v %v %v", tc.name, s, sok, d, dok, tc.src, tc.dst, tc.ok)
		}
	}
}

func TestParseAddrsAllocs(t *testing.T) {
	v4 := PacketIPv4(v4a, v4b, ProtoICMP, nil)
	v6 := PacketIPv6(v6a, v6b, ProtoICMPv6, nil)
	var sink netip.Addr
	allocs := testing.AllocsPerRun(1000, func() {
		a, _ := ParseDst(v4)
		b, _ := ParseSrc(v4)
		c, _ := ParseDst(v6)
		d, _ := ParseSrc(v6)
		if a == b || c == d {
			sink = a
		}
	})
	if allocs != 0 {
		t.Fatalf("ParseDst/ParseSrc allocate %v times per run, want 0", allocs)
	}
	_ = sink
}

func FuzzParseAddrs(f *testing.F) {
	f.Add(PacketIPv4(v4a, v4b, ProtoUDP, []byte("x")))
	f.Add(PacketIPv6(v6a, v6b, ProtoTCP, []byte("y")))
	f.Add([]byte{})
	f.Add([]byte{0x45})
	f.Add([]byte{0x60, 0, 0, 0})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		d, dok := ParseDst(pkt)
		s, sok := ParseSrc(pkt)
		if dok != sok {
			t.Fatalf("ParseDst ok=%v but ParseSrc ok=%v", dok, sok)
		}
		if !dok {
			if d.IsValid() || s.IsValid() {
				t.Fatal("invalid result carries an address")
			}
			return
		}
		switch pkt[0] >> 4 {
		case 4:
			if len(pkt) < 20 || pkt[0]&0xf < 5 || !d.Is4() || !s.Is4() {
				t.Fatalf("accepted bad IPv4 % x", pkt)
			}
			if d.As4() != [4]byte(pkt[16:20]) || s.As4() != [4]byte(pkt[12:16]) {
				t.Fatal("IPv4 addresses do not match the header")
			}
			// Rebuilding the header round-trips the addresses.
			re := PacketIPv4(s, d, pkt[9], nil)
			if rs, _ := ParseSrc(re); rs != s {
				t.Fatal("IPv4 round trip")
			}
		case 6:
			if len(pkt) < 40 || !d.Is6() || !s.Is6() {
				t.Fatalf("accepted bad IPv6 % x", pkt)
			}
			if d.As16() != [16]byte(pkt[24:40]) || s.As16() != [16]byte(pkt[8:24]) {
				t.Fatal("IPv6 addresses do not match the header")
			}
		default:
			t.Fatalf("accepted version %d", pkt[0]>>4)
		}
	})
}

func BenchmarkParseDst(b *testing.B) {
	v4 := PacketIPv4(v4a, v4b, ProtoUDP, make([]byte, 1380))
	v6 := PacketIPv6(v6a, v6b, ProtoUDP, make([]byte, 1360))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		if a, ok := ParseDst(v4); ok && a.Is4() {
			n++
		}
		if a, ok := ParseDst(v6); ok && a.Is6() {
			n++
		}
	}
	_ = n
}
