package wire

import "fmt"

// The plaintext of a data packet on a link (a session between direct
// neighbours) is one of:
//
//   - an IPv4 or IPv6 packet for the receiver (first byte 0x4_ or 0x6_);
//   - nothing: a keepalive;
//   - a link message, whose first byte is under 0x40 (so never confused with
//     an IP packet):
//     0x01 LinkForward: ForwardHeader + a complete end-to-end datagram for another node;
//     0x03 LinkFragment: a Fragment (type 5 layout) of a link message too large for one packet;
//     0x10–0x1F: routing protocol messages (package route);
//     0x20–0x2F: link monitoring probes and replies (package linkmon).
//
// Only an authenticated neighbour can put anything on a link, so a relay knows
// who handed it every packet it forwards.
const (
	LinkForward  = 0x01
	LinkFragment = 0x03
	LinkRouteMin = 0x10
	LinkRouteMax = 0x1f
	LinkMonMin   = 0x20
	LinkMonMax   = 0x2f
)

// ForwardHeaderSize is the size of the forwarding header:
//
//	0   type = LinkForward
//	1   hop limit (decremented by every relay; a packet reaching 0 is dropped)
//	2   reserved (2)
//	4   destination node ID (16)
//	20  the end-to-end datagram (data, fragment of a handshake message, cookie reply)
//
// The datagram is end-to-end encrypted between source and destination (its own
// session); relays read only the destination.
const ForwardHeaderSize = 20

// DefaultHopLimit bounds how far a packet travels; a forwarding loop can never
// keep one alive.
const DefaultHopLimit = 16

// IsIPPacket reports whether a plaintext is an IP packet rather than a link
// message.
func IsIPPacket(b []byte) bool {
	return len(b) > 0 && (b[0]>>4 == 4 || b[0]>>4 == 6)
}

// PutForwardHeader writes a forwarding header into b[:ForwardHeaderSize].
func PutForwardHeader(b []byte, hopLimit uint8, dst [16]byte) {
	_ = b[ForwardHeaderSize-1]
	b[0] = LinkForward
	b[1] = hopLimit
	b[2], b[3] = 0, 0
	copy(b[4:20], dst[:])
}

// ParseForward decodes a forwarding header; inner aliases b.
func ParseForward(b []byte) (hopLimit uint8, dst [16]byte, inner []byte, err error) {
	if len(b) < ForwardHeaderSize+1 {
		return 0, dst, nil, ErrShort
	}
	if b[0] != LinkForward {
		return 0, dst, nil, ErrType
	}
	if b[2]|b[3] != 0 {
		return 0, dst, nil, ErrReserved
	}
	switch PacketType(b[ForwardHeaderSize:]) {
	case TypeData, TypeFragment, TypeCookieReply:
	default:
		return 0, dst, nil, fmt.Errorf("%w: forwarded datagram of type %d", ErrMalformed, b[ForwardHeaderSize])
	}
	copy(dst[:], b[4:20])
	return b[1], dst, b[ForwardHeaderSize:], nil
}
