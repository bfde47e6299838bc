package wire

import (
	"crypto/mlkem"
	"encoding/binary"
	"fmt"
)

// Sizes of handshake fields.
const (
	X25519Size     = 32
	MLKEMKeySize   = mlkem.EncapsulationKeySize768 // 1184
	MLKEMCtSize    = mlkem.CiphertextSize768       // 1088
	TimestampSize  = 12                            // TAI64N
	MACSize        = 16
	HandshakeHdr   = 12 // type, 3 reserved, index, index-or-suite word
	minCertSize    = 64
	MaxCertSize    = 8192
	CookieSize     = 16
	CookieNonceLen = 24
)

// Initiation layout offsets. The certificate is variable: everything after
// initCertOff is enc_cert || enc_ts || mac1 || mac2.
const (
	initEphOff  = HandshakeHdr
	initKEMOff  = initEphOff + X25519Size
	initCtOff   = initKEMOff + MLKEMKeySize
	initCertOff = initCtOff + MLKEMCtSize // 2316
	initTailLen = (TimestampSize + TagSize) + 2*MACSize
	// MinInitiationSize is an initiation carrying the smallest certificate.
	MinInitiationSize = initCertOff + minCertSize + TagSize + initTailLen
	// MaxInitiationSize bounds what a responder reassembles.
	MaxInitiationSize = initCertOff + MaxCertSize + TagSize + initTailLen
)

// Suites of AEAD for transport data, chosen by the initiator.
const (
	SuiteAES256GCM        = 1
	SuiteChaCha20Poly1305 = 2
)

// Initiation is a decoded handshake initiation. Slices alias the packet.
type Initiation struct {
	Sender    uint32
	Suite     uint8
	Header    []byte // the first HandshakeHdr bytes, mixed into the transcript
	Ephemeral []byte // X25519
	KEMKey    []byte // ephemeral ML-KEM-768 encapsulation key
	StaticCt  []byte // ML-KEM-768 ciphertext to the responder's static key
	EncCert   []byte // AEAD(initiator certificate)
	EncTime   []byte // AEAD(timestamp)
	MAC1      []byte
	MAC2      []byte
}

// AppendInitiation encodes an initiation. EncCert, EncTime and the MACs must
// already be final (MACs may be zero and filled in later with SetMACs).
func AppendInitiation(b []byte, m *Initiation) []byte {
	b = append(b, TypeInitiation, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, m.Sender)
	b = append(b, m.Suite, 0, 0, 0)
	b = append(b, m.Ephemeral...)
	b = append(b, m.KEMKey...)
	b = append(b, m.StaticCt...)
	b = append(b, m.EncCert...)
	b = append(b, m.EncTime...)
	b = append(b, m.MAC1...)
	return append(b, m.MAC2...)
}

// ParseInitiation decodes an initiation without copying.
func ParseInitiation(b []byte) (*Initiation, error) {
	if len(b) < MinInitiationSize {
		return nil, ErrShort
	}
	if len(b) > MaxInitiationSize {
		return nil, fmt.Errorf("%w: initiation of %d bytes", ErrMalformed, len(b))
	}
	if b[0] != TypeInitiation {
		return nil, ErrType
	}
	if b[1]|b[2]|b[3]|b[9]|b[10]|b[11] != 0 {
		return nil, ErrReserved
	}
	m := &Initiation{
		Sender:    binary.LittleEndian.Uint32(b[4:8]),
		Suite:     b[8],
		Header:    b[:HandshakeHdr],
		Ephemeral: b[initEphOff:initKEMOff],
		KEMKey:    b[initKEMOff:initCtOff],
		StaticCt:  b[initCtOff:initCertOff],
	}
	certEnd := len(b) - initTailLen
	m.EncCert = b[initCertOff:certEnd]
	m.EncTime = b[certEnd : certEnd+TimestampSize+TagSize]
	m.MAC1 = b[len(b)-2*MACSize : len(b)-MACSize]
	m.MAC2 = b[len(b)-MACSize:]
	return m, nil
}

// Response layout offsets.
const (
	respEphOff   = HandshakeHdr
	respCtEOff   = respEphOff + X25519Size
	respCtSOff   = respCtEOff + MLKEMCtSize
	respEmptyOff = respCtSOff + MLKEMCtSize
	respMAC1Off  = respEmptyOff + TagSize
	// ResponseSize is the fixed size of a response.
	ResponseSize = respMAC1Off + 2*MACSize // 2268
)

// Response is a decoded handshake response. Slices alias the packet.
type Response struct {
	Sender    uint32
	Receiver  uint32
	Header    []byte
	Ephemeral []byte // X25519
	EphCt     []byte // ML-KEM-768 ciphertext to the initiator's ephemeral key
	StaticCt  []byte // ML-KEM-768 ciphertext to the initiator's static key
	EncEmpty  []byte // AEAD("") confirming the responder derived the keys
	MAC1      []byte
	MAC2      []byte
}

// AppendResponse encodes a response.
func AppendResponse(b []byte, m *Response) []byte {
	b = append(b, TypeResponse, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, m.Sender)
	b = binary.LittleEndian.AppendUint32(b, m.Receiver)
	b = append(b, m.Ephemeral...)
	b = append(b, m.EphCt...)
	b = append(b, m.StaticCt...)
	b = append(b, m.EncEmpty...)
	b = append(b, m.MAC1...)
	return append(b, m.MAC2...)
}

// ParseResponse decodes a response without copying.
func ParseResponse(b []byte) (*Response, error) {
	if len(b) != ResponseSize {
		return nil, fmt.Errorf("%w: response of %d bytes, want %d", ErrMalformed, len(b), ResponseSize)
	}
	if b[0] != TypeResponse {
		return nil, ErrType
	}
	if b[1]|b[2]|b[3] != 0 {
		return nil, ErrReserved
	}
	return &Response{
		Sender:    binary.LittleEndian.Uint32(b[4:8]),
		Receiver:  binary.LittleEndian.Uint32(b[8:12]),
		Header:    b[:HandshakeHdr],
		Ephemeral: b[respEphOff:respCtEOff],
		EphCt:     b[respCtEOff:respCtSOff],
		StaticCt:  b[respCtSOff:respEmptyOff],
		EncEmpty:  b[respEmptyOff:respMAC1Off],
		MAC1:      b[respMAC1Off : respMAC1Off+MACSize],
		MAC2:      b[respMAC1Off+MACSize:],
	}, nil
}

// CookieReplySize is the fixed size of a cookie reply.
const CookieReplySize = 8 + CookieNonceLen + CookieSize + TagSize // 64

// CookieReply answers a handshake message with a cookie when the receiver is
// under load. Slices alias the packet.
type CookieReply struct {
	Receiver  uint32 // the sender index of the message it answers
	Nonce     []byte
	EncCookie []byte
}

// AppendCookieReply encodes a cookie reply.
func AppendCookieReply(b []byte, m *CookieReply) []byte {
	b = append(b, TypeCookieReply, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, m.Receiver)
	b = append(b, m.Nonce...)
	return append(b, m.EncCookie...)
}

// ParseCookieReply decodes a cookie reply without copying.
func ParseCookieReply(b []byte) (*CookieReply, error) {
	if len(b) != CookieReplySize {
		return nil, fmt.Errorf("%w: cookie reply of %d bytes", ErrMalformed, len(b))
	}
	if b[0] != TypeCookieReply {
		return nil, ErrType
	}
	if b[1]|b[2]|b[3] != 0 {
		return nil, ErrReserved
	}
	return &CookieReply{
		Receiver:  binary.LittleEndian.Uint32(b[4:8]),
		Nonce:     b[8 : 8+CookieNonceLen],
		EncCookie: b[8+CookieNonceLen:],
	}, nil
}

// MACOffsets returns where mac1 and mac2 start in a handshake message (initiation
// or response), so the MACs can be computed over the bytes before them.
func MACOffsets(msg []byte) (mac1, mac2 int, ok bool) {
	if len(msg) < 2*MACSize+HandshakeHdr {
		return 0, 0, false
	}
	switch msg[0] {
	case TypeInitiation, TypeResponse:
		return len(msg) - 2*MACSize, len(msg) - MACSize, true
	}
	return 0, 0, false
}

// SenderIndex returns the sender index of a handshake message.
func SenderIndex(msg []byte) uint32 {
	if len(msg) < 8 {
		return 0
	}
	return binary.LittleEndian.Uint32(msg[4:8])
}
