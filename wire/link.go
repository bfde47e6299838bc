package wire

import (
	"encoding/binary"
	"fmt"
)

// The plaintext of a data packet on a link (a session between direct
// neighbours) is one of:
//
//   - an IPv4 or IPv6 packet for the receiver (first byte 0x4_ or 0x6_);
//   - nothing: a keepalive;
//   - a link message, whose first byte is under 0x40 (so never confused with
//     an IP packet):
//     0x01 LinkForward: ForwardHeader + an end-to-end handshake datagram for another node;
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
//	20  the end-to-end datagram: a fragment of a handshake message or a cookie reply
//
// In a link packet (LinkForward) it carries handshake traffic between nodes
// that are not neighbours; end-to-end data travels as relayed packets (type
// 6), which carry the same header encrypted in their link layer.
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
	if hopLimit, dst, err = ParseForwardHeader(b[:ForwardHeaderSize]); err != nil {
		return 0, dst, nil, err
	}
	switch PacketType(b[ForwardHeaderSize:]) {
	case TypeFragment, TypeCookieReply: // data travels as relayed packets (type 6)
	default:
		return 0, dst, nil, fmt.Errorf("%w: forwarded datagram of type %d", ErrMalformed, b[ForwardHeaderSize])
	}
	return hopLimit, dst, b[ForwardHeaderSize:], nil
}

// ParseForwardHeader decodes the ForwardHeaderSize bytes of a forwarding
// header alone (as a relayed packet carries it).
func ParseForwardHeader(b []byte) (hopLimit uint8, dst [16]byte, err error) {
	if len(b) != ForwardHeaderSize {
		return 0, dst, ErrShort
	}
	if b[0] != LinkForward {
		return 0, dst, ErrType
	}
	if b[2]|b[3] != 0 {
		return 0, dst, ErrReserved
	}
	copy(dst[:], b[4:20])
	return b[1], dst, nil
}

// A relayed data packet (type 6) carries an end-to-end data packet through
// one link of a multi-hop path. Only its first RelayHeaderSize bytes are the
// link's: the end-to-end packet after them is already sealed by the source
// for the destination, and is not encrypted a second time:
//
//	0   type = 6, reserved (3)
//	4   receiver index (u32), as in a data packet, for the link's session
//	8   counter (u64), the link session's send counter
//	16  forwarding header (ForwardHeaderSize), encrypted with the link key
//	36  link tag (TagSize)
//	52  end-to-end data packet (type 4): header, ciphertext, tag
//
// The link tag authenticates the header, the forwarding header and, as
// associated data, the end-to-end packet's header, tag and length (RelayAD);
// the end-to-end packet's own AEAD covers the rest.
const RelayHeaderSize = DataHeaderSize + ForwardHeaderSize + TagSize

// RelayADSize is the size of a relayed packet's associated data.
const RelayADSize = DataHeaderSize + DataHeaderSize + TagSize + 2

// PutRelayHeader writes the first DataHeaderSize bytes of a relayed packet.
func PutRelayHeader(b []byte, receiver uint32, counter uint64) {
	PutDataHeader(b, receiver, counter)
	b[0] = TypeRelay
}

// ParseRelayHeader decodes a relayed packet's header. The packet must hold a
// whole link layer and an end-to-end data packet (at least its header and tag).
func ParseRelayHeader(b []byte) (receiver uint32, counter uint64, err error) {
	if len(b) < RelayHeaderSize+DataOverhead {
		return 0, 0, ErrShort
	}
	if b[0] != TypeRelay || b[RelayHeaderSize] != TypeData {
		return 0, 0, ErrType
	}
	if b[1]|b[2]|b[3] != 0 {
		return 0, 0, ErrReserved
	}
	return binary.LittleEndian.Uint32(b[4:8]), binary.LittleEndian.Uint64(b[8:16]), nil
}

// RelayAD writes into ad (RelayADSize bytes) the associated data of relayed
// packet b: its 16-byte header, the end-to-end packet's header and tag, and
// the end-to-end packet's length (u16, big endian). b must have passed
// ParseRelayHeader (or be a packet being sealed with the same layout).
func RelayAD(ad, b []byte) {
	_ = ad[RelayADSize-1]
	inner := b[RelayHeaderSize:]
	copy(ad[0:16], b[:DataHeaderSize])
	copy(ad[16:32], inner[:DataHeaderSize])
	copy(ad[32:48], inner[len(inner)-TagSize:])
	binary.BigEndian.PutUint16(ad[48:50], uint16(len(inner)))
}

// A delivered packet (type 7) is an end-to-end data packet handed to its
// destination by the last relay of its path, which replaces its own link layer
// with a 4-byte header:
//
//	0   type = 7, reserved (3)
//	4   end-to-end data packet (type 4): header, ciphertext, tag
//
// Nothing in it is the last link's to protect: the destination opens the
// end-to-end packet as it would a direct one, and does not take the datagram's
// source address for its peer's (docs/protocol.md, section 5.1).
const DeliverHeaderSize = 4

// PutDeliverHeader writes a delivered packet's header into b[:DeliverHeaderSize].
func PutDeliverHeader(b []byte) {
	_ = b[DeliverHeaderSize-1]
	b[0], b[1], b[2], b[3] = TypeDeliver, 0, 0, 0
}

// ParseDeliver returns the end-to-end data packet that delivered packet b
// carries. It must hold at least that packet's header and tag.
func ParseDeliver(b []byte) ([]byte, error) {
	if len(b) < DeliverHeaderSize+DataOverhead {
		return nil, ErrShort
	}
	if b[0] != TypeDeliver || b[DeliverHeaderSize] != TypeData {
		return nil, ErrType
	}
	if b[1]|b[2]|b[3] != 0 {
		return nil, ErrReserved
	}
	return b[DeliverHeaderSize:], nil
}
