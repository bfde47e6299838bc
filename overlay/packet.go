package overlay

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// IP protocol numbers used by the packet helpers.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
	defaultTTL    = 64
)

// ParseDst returns the destination address of an IPv4 or IPv6 packet. It is
// on the forwarding hot path, so it never allocates and only checks what it
// needs to read the address safely: the version nibble, the minimum header
// length and, for IPv4, a sane IHL. ok is false for anything else.
func ParseDst(pkt []byte) (addr netip.Addr, ok bool) {
	switch ipVersion(pkt) {
	case 4:
		return netip.AddrFrom4([4]byte(pkt[16:20])), true
	case 6:
		return netip.AddrFrom16([16]byte(pkt[24:40])), true
	}
	return netip.Addr{}, false
}

// ParseSrc returns the source address of an IPv4 or IPv6 packet, with the
// same checks and cost as [ParseDst]; the receiving node uses it to match a
// decrypted packet against the sender's certified addresses.
func ParseSrc(pkt []byte) (addr netip.Addr, ok bool) {
	switch ipVersion(pkt) {
	case 4:
		return netip.AddrFrom4([4]byte(pkt[12:16])), true
	case 6:
		return netip.AddrFrom16([16]byte(pkt[8:24])), true
	}
	return netip.Addr{}, false
}

// ipVersion returns 4 or 6 when pkt is long enough to hold that version's
// fixed header, else 0.
func ipVersion(pkt []byte) int {
	if len(pkt) == 0 {
		return 0
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) >= ipv4HeaderLen && pkt[0]&0x0f >= 5 {
			return 4
		}
	case 6:
		if len(pkt) >= ipv6HeaderLen {
			return 6
		}
	}
	return 0
}

// PacketIPv4 builds an IPv4 packet (no options, TTL 64, DF set) around an
// already-built transport payload, with a correct header checksum. It is a
// test helper: it panics when src or dst is not IPv4 or the packet would
// exceed 65535 bytes.
func PacketIPv4(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	if !src.Is4() || !dst.Is4() {
		panic(fmt.Sprintf("overlay: PacketIPv4: %v -> %v: not IPv4 addresses", src, dst))
	}
	total := ipv4HeaderLen + len(payload)
	if total > maxPacket {
		panic(fmt.Sprintf("overlay: PacketIPv4: packet of %d bytes exceeds %d", total, maxPacket))
	}
	pkt := make([]byte, total)
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(total))
	binary.BigEndian.PutUint16(pkt[6:], 0x4000) // DF: the overlay never fragments
	pkt[8] = defaultTTL
	pkt[9] = proto
	s, d := src.As4(), dst.As4()
	copy(pkt[12:16], s[:])
	copy(pkt[16:20], d[:])
	binary.BigEndian.PutUint16(pkt[10:], ^checksum(pkt[:ipv4HeaderLen], 0))
	copy(pkt[ipv4HeaderLen:], payload)
	return pkt
}

// PacketIPv6 builds an IPv6 packet (hop limit 64, no extension headers)
// around an already-built transport payload; proto is the next header. It is
// a test helper: it panics when src or dst is not IPv6 (IPv4-mapped addresses
// are rejected too) or the payload exceeds 65535 bytes.
func PacketIPv6(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	if !src.Is6() || !dst.Is6() || src.Is4In6() || dst.Is4In6() {
		panic(fmt.Sprintf("overlay: PacketIPv6: %v -> %v: not IPv6 addresses", src, dst))
	}
	if len(payload) > maxPacket {
		panic(fmt.Sprintf("overlay: PacketIPv6: payload of %d bytes exceeds %d", len(payload), maxPacket))
	}
	pkt := make([]byte, ipv6HeaderLen+len(payload))
	pkt[0] = 0x60
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(payload)))
	pkt[6] = proto
	pkt[7] = defaultTTL
	s, d := src.As16(), dst.As16()
	copy(pkt[8:24], s[:])
	copy(pkt[24:40], d[:])
	copy(pkt[ipv6HeaderLen:], payload)
	return pkt
}

// PacketUDP builds a complete IPv4 or IPv6 UDP packet with valid IP and UDP
// checksums, so a kernel stack accepts it when it is written into a TUN. It is
// a test helper: it panics when src and dst are not both IPv4 or both IPv6.
func PacketUDP(src, dst netip.AddrPort, payload []byte) []byte {
	sa, da := src.Addr(), dst.Addr()
	if sa.Is4() != da.Is4() || !sa.IsValid() || !da.IsValid() {
		panic(fmt.Sprintf("overlay: PacketUDP: %v -> %v: mixed or invalid address families", src, dst))
	}
	udp := make([]byte, udpHeaderLen+len(payload))
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[udpHeaderLen:], payload)
	if sa.Is4() {
		binary.BigEndian.PutUint16(udp[6:], TransportChecksum(sa, da, ProtoUDP, udp))
		return PacketIPv4(sa, da, ProtoUDP, udp)
	}
	binary.BigEndian.PutUint16(udp[6:], TransportChecksum(sa, da, ProtoUDP, udp))
	return PacketIPv6(sa, da, ProtoUDP, udp)
}

// TransportChecksum returns the Internet checksum of a TCP, UDP or ICMPv6
// segment (whose own checksum field must be zero) including the IPv4 or IPv6
// pseudo-header, ready to store in the checksum field. For UDP a zero result
// is sent as 0xffff, as RFC 768 requires. ICMPv4 has no pseudo-header: use an
// invalid src (netip.Addr{}) to checksum the segment alone.
func TransportChecksum(src, dst netip.Addr, proto uint8, segment []byte) uint16 {
	var sum uint32
	if src.IsValid() {
		sum = pseudoHeaderSum(src, dst, proto, len(segment))
	}
	c := ^checksum(segment, sum)
	if c == 0 && proto == ProtoUDP {
		c = 0xffff
	}
	return c
}

func pseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var sum uint32
	s, d := src.AsSlice(), dst.AsSlice()
	for i := 0; i+1 < len(s); i += 2 {
		sum += uint32(s[i])<<8 | uint32(s[i+1])
		sum += uint32(d[i])<<8 | uint32(d[i+1])
	}
	sum += uint32(proto)
	sum += uint32(length>>16) + uint32(length&0xffff)
	return sum
}

// checksum folds b into the one's-complement sum started at initial and
// returns the folded (not inverted) 16-bit result.
func checksum(b []byte, initial uint32) uint16 {
	sum := uint64(initial)
	for len(b) >= 2 {
		sum += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
