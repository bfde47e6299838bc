// Package wire defines every packet x0t puts on the underlay: their layouts,
// encoders and decoders. Decoders never allocate on the data path and reject
// anything that is not exactly well formed. The layouts are specified in
// docs/protocol.md; a change here is a protocol change.
package wire

import (
	"encoding/binary"
	"errors"
)

// Packet types: the first byte of every datagram.
const (
	TypeInitiation  = 1
	TypeResponse    = 2
	TypeCookieReply = 3
	TypeData        = 4
	TypeFragment    = 5
	TypeRelay       = 6
	TypeDeliver     = 7
)

// Sizes of the data packet.
const (
	DataHeaderSize = 16 // type, 3 reserved, receiver index, counter
	TagSize        = 16 // AEAD tag
	DataOverhead   = DataHeaderSize + TagSize
)

// Errors from decoders; callers count drops by them.
var (
	ErrShort     = errors.New("wire: packet too short")
	ErrType      = errors.New("wire: unexpected packet type")
	ErrReserved  = errors.New("wire: reserved bits set")
	ErrMalformed = errors.New("wire: malformed packet")
)

// PacketType returns the type byte of a datagram, or 0 if it is empty.
func PacketType(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// PutDataHeader writes the 16-byte data header into b.
func PutDataHeader(b []byte, receiver uint32, counter uint64) {
	_ = b[15]
	b[0] = TypeData
	b[1], b[2], b[3] = 0, 0, 0
	binary.LittleEndian.PutUint32(b[4:8], receiver)
	binary.LittleEndian.PutUint64(b[8:16], counter)
}

// ParseDataHeader decodes a data packet's header. The packet must hold at least
// a header and a tag (an empty payload is a keepalive).
func ParseDataHeader(b []byte) (receiver uint32, counter uint64, err error) {
	if len(b) < DataOverhead {
		return 0, 0, ErrShort
	}
	if b[0] != TypeData {
		return 0, 0, ErrType
	}
	if b[1]|b[2]|b[3] != 0 {
		return 0, 0, ErrReserved
	}
	return binary.LittleEndian.Uint32(b[4:8]), binary.LittleEndian.Uint64(b[8:16]), nil
}
