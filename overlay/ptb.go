package overlay

import (
	"encoding/binary"
	"net/netip"
)

// PacketTooBigLen is the largest message PacketTooBig writes: the IPv6
// minimum MTU, which is also all an ICMPv6 error may take (RFC 4443 §2.4).
const PacketTooBigLen = 1280

// ICMP error quotes: an ICMPv4 error is at most 576 bytes (RFC 1812 §4.3.2.3).
const icmpv4ErrorMax = 576

// PacketTooBig writes into out the ICMP error that tells the sender of pkt
// that a hop can carry at most mtu bytes: "fragmentation needed" (ICMPv4 type
// 3 code 4, RFC 1191) or "packet too big" (ICMPv6 type 2, RFC 8201), sent
// from src, quoting as much of pkt as the RFCs allow. The sender's stack then
// lowers its path MTU for pkt's destination and sends smaller packets.
//
// It returns the message's length, or 0 when pkt calls for no such message:
// not a well-formed IP packet, an IPv4 packet without DF (it may be
// fragmented instead), a fragment past the first, an ICMP error itself (errors
// are never answered with errors), an mtu below the family's minimum, or a
// src of the other family. out must hold PacketTooBigLen bytes. It does not
// allocate.
func PacketTooBig(out []byte, src netip.Addr, pkt []byte, mtu int) int {
	if len(out) < PacketTooBigLen {
		return 0
	}
	switch ipVersion(pkt) {
	case 4:
		return tooBig4(out, src, pkt, mtu)
	case 6:
		return tooBig6(out, src, pkt, mtu)
	}
	return 0
}

func tooBig4(out []byte, src netip.Addr, pkt []byte, mtu int) int {
	ihl := int(pkt[0]&0x0f) * 4
	flags := binary.BigEndian.Uint16(pkt[6:])
	switch {
	case !src.Is4() || mtu < 68 || mtu > 0xffff || len(pkt) < ihl:
		return 0
	case flags&0x4000 == 0 || flags&0x1fff != 0: // no DF, or not the first fragment
		return 0
	case pkt[9] == ProtoICMP && len(pkt) > ihl && isICMPv4Error(pkt[ihl]):
		return 0
	}
	quote := min(len(pkt), icmpv4ErrorMax-ipv4HeaderLen-8)
	total := ipv4HeaderLen + 8 + quote
	ip, icmp := out[:ipv4HeaderLen], out[ipv4HeaderLen:total]
	clear(out[:ipv4HeaderLen+8])
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(total))
	ip[8] = defaultTTL
	ip[9] = ProtoICMP
	s := src.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], pkt[12:16]) // to the packet's sender
	binary.BigEndian.PutUint16(ip[10:], ^checksum(ip, 0))
	icmp[0], icmp[1] = 3, 4
	binary.BigEndian.PutUint16(icmp[6:], uint16(mtu))
	copy(icmp[8:], pkt[:quote])
	binary.BigEndian.PutUint16(icmp[2:], ^checksum(icmp, 0))
	return total
}

// isICMPv4Error reports whether an ICMPv4 type is an error message.
func isICMPv4Error(typ byte) bool {
	switch typ {
	case 3, 4, 5, 11, 12: // unreachable, source quench, redirect, time exceeded, parameter problem
		return true
	}
	return false
}

func tooBig6(out []byte, src netip.Addr, pkt []byte, mtu int) int {
	switch {
	case !src.Is6() || src.Is4In6() || mtu < PacketTooBigLen:
		return 0
	case pkt[6] == ProtoICMPv6 && len(pkt) > ipv6HeaderLen && pkt[ipv6HeaderLen] < 128: // an error message
		return 0
	}
	quote := min(len(pkt), PacketTooBigLen-ipv6HeaderLen-8)
	total := ipv6HeaderLen + 8 + quote
	ip, icmp := out[:ipv6HeaderLen], out[ipv6HeaderLen:total]
	clear(out[:ipv6HeaderLen+8])
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(8+quote))
	ip[6] = ProtoICMPv6
	ip[7] = defaultTTL
	s := src.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], pkt[8:24])
	icmp[0] = 2
	binary.BigEndian.PutUint32(icmp[4:], uint32(mtu))
	copy(icmp[8:], pkt[:quote])
	dst := netip.AddrFrom16([16]byte(pkt[8:24]))
	binary.BigEndian.PutUint16(icmp[2:], ^checksum(icmp, pseudoHeaderSum6(src, dst, ProtoICMPv6, len(icmp))))
	return total
}

// pseudoHeaderSum6 is pseudoHeaderSum for IPv6 addresses, without the
// slices that AsSlice would allocate.
func pseudoHeaderSum6(src, dst netip.Addr, proto uint8, length int) uint32 {
	s, d := src.As16(), dst.As16()
	var sum uint32
	for i := 0; i < 16; i += 2 {
		sum += uint32(s[i])<<8 | uint32(s[i+1])
		sum += uint32(d[i])<<8 | uint32(d[i+1])
	}
	return sum + uint32(proto) + uint32(length>>16) + uint32(length&0xffff)
}
