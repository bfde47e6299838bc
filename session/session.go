// Package session holds the transport keys from one handshake and seals and
// opens data packets with them: AEAD per packet, a 64-bit counter per direction,
// and a sliding replay window. Seal and Open work in place and do not allocate.
package session

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/x0tta6bl4/x0t/wire"
	"golang.org/x/crypto/chacha20poly1305"
)

// Lifetimes and limits of a keypair, as in WireGuard: rekey after two minutes or
// 2^60 messages; never use a key after three minutes or near counter exhaustion.
const (
	RekeyAfterMessages  = 1 << 60
	RejectAfterMessages = math.MaxUint64 - (1 << 13)
	RekeyAfterTime      = 120 * time.Second
	RejectAfterTime     = 180 * time.Second
)

// Errors from Seal and Open; the node counts drops by them.
var (
	ErrExhausted = errors.New("session: counter exhausted")
	ErrExpired   = errors.New("session: keypair expired")
	ErrAuth      = errors.New("session: packet does not authenticate")
	ErrReplay    = errors.New("session: replayed or too old counter")
)

// Keypair is one handshake's transport keys and counters.
type Keypair struct {
	send    cipher.AEAD
	recv    cipher.AEAD
	counter atomic.Uint64 // next send counter
	replay  ReplayFilter

	LocalIndex  uint32 // receiver index peers put on packets to us
	RemoteIndex uint32 // receiver index we put on packets to the peer
	Initiator   bool
	Created     time.Time
}

// NewKeypair builds a keypair from a handshake's keys.
func NewKeypair(send, recv [32]byte, suite uint8, local, remote uint32, initiator bool, now time.Time) (*Keypair, error) {
	s, err := newAEAD(suite, send[:])
	if err != nil {
		return nil, err
	}
	r, err := newAEAD(suite, recv[:])
	if err != nil {
		return nil, err
	}
	return &Keypair{send: s, recv: r, LocalIndex: local, RemoteIndex: remote, Initiator: initiator, Created: now}, nil
}

func newAEAD(suite uint8, key []byte) (cipher.AEAD, error) {
	switch suite {
	case wire.SuiteAES256GCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("session: %w", err)
		}
		return cipher.NewGCM(b)
	case wire.SuiteChaCha20Poly1305:
		return chacha20poly1305.New(key)
	}
	return nil, fmt.Errorf("session: unknown suite %d", suite)
}

// Seal turns buf into a data packet in place. On entry buf[DataHeaderSize:
// DataHeaderSize+n] holds the plaintext and cap(buf) leaves TagSize bytes after
// it; Seal writes the header and the tag and returns the packet length.
//
// The nonce is the header's receiver index and counter (12 bytes), unique per
// key because the counter never repeats; the whole header is associated data.
func (kp *Keypair) Seal(buf []byte, n int, now time.Time) (int, error) {
	c := kp.counter.Add(1) - 1
	if c >= RejectAfterMessages {
		kp.counter.Store(RejectAfterMessages)
		return 0, ErrExhausted
	}
	if now.Sub(kp.Created) >= RejectAfterTime {
		return 0, ErrExpired
	}
	buf = buf[:wire.DataHeaderSize+n+wire.TagSize]
	wire.PutDataHeader(buf, kp.RemoteIndex, c)
	kp.send.Seal(buf[wire.DataHeaderSize:wire.DataHeaderSize], buf[4:wire.DataHeaderSize],
		buf[wire.DataHeaderSize:wire.DataHeaderSize+n], buf[:wire.DataHeaderSize])
	return len(buf), nil
}

// Open authenticates and decrypts a data packet in place and returns the
// plaintext (aliasing pkt). The caller has parsed the header to find this
// keypair; counter is the header's counter.
func (kp *Keypair) Open(pkt []byte, counter uint64, now time.Time) ([]byte, error) {
	if now.Sub(kp.Created) >= RejectAfterTime {
		return nil, ErrExpired
	}
	if !kp.replay.mayAccept(counter) {
		return nil, ErrReplay
	}
	pt, err := kp.recv.Open(pkt[wire.DataHeaderSize:wire.DataHeaderSize], pkt[4:wire.DataHeaderSize],
		pkt[wire.DataHeaderSize:], pkt[:wire.DataHeaderSize])
	if err != nil {
		return nil, ErrAuth
	}
	// Only an authentic packet may move the window.
	if !kp.replay.Accept(counter) {
		return nil, ErrReplay
	}
	return pt, nil
}

// RelayScratch is room for a relayed packet's associated data. Each goroutine
// that seals or opens relayed packets keeps its own, so that neither
// allocates (the AEAD interface would move a stack array to the heap).
type RelayScratch [wire.RelayADSize]byte

// SealRelay seals the link layer of a relayed data packet in place (layout in
// package wire). On entry pkt[DataHeaderSize:DataHeaderSize+ForwardHeaderSize]
// holds the forwarding header in plaintext and pkt[RelayHeaderSize:] a sealed
// end-to-end data packet; SealRelay writes the header, encrypts the
// forwarding header and writes the link tag. The end-to-end packet is not
// encrypted again: its AEAD already protects it, and the link tag binds its
// header, tag and length, so a relay accepts only what a neighbour sent.
//
// Relayed and data packets share the keypair's counter, so nonces never
// repeat across the two; the type byte, in the associated data of both,
// keeps one from passing for the other.
func (kp *Keypair) SealRelay(pkt []byte, ad *RelayScratch, now time.Time) error {
	c := kp.counter.Add(1) - 1
	if c >= RejectAfterMessages {
		kp.counter.Store(RejectAfterMessages)
		return ErrExhausted
	}
	if now.Sub(kp.Created) >= RejectAfterTime {
		return ErrExpired
	}
	wire.PutRelayHeader(pkt, kp.RemoteIndex, c)
	wire.RelayAD(ad[:], pkt)
	const fh = wire.DataHeaderSize + wire.ForwardHeaderSize
	kp.send.Seal(pkt[wire.DataHeaderSize:wire.DataHeaderSize], pkt[4:wire.DataHeaderSize],
		pkt[wire.DataHeaderSize:fh], ad[:])
	return nil
}

// OpenRelay authenticates a relayed packet's link layer and decrypts its
// forwarding header in place; pkt has passed wire.ParseRelayHeader and
// counter is its header's counter. The end-to-end packet is left to its
// destination.
func (kp *Keypair) OpenRelay(pkt []byte, counter uint64, ad *RelayScratch, now time.Time) error {
	if now.Sub(kp.Created) >= RejectAfterTime {
		return ErrExpired
	}
	if !kp.replay.mayAccept(counter) {
		return ErrReplay
	}
	wire.RelayAD(ad[:], pkt)
	if _, err := kp.recv.Open(pkt[wire.DataHeaderSize:wire.DataHeaderSize], pkt[4:wire.DataHeaderSize],
		pkt[wire.DataHeaderSize:wire.RelayHeaderSize], ad[:]); err != nil {
		return ErrAuth
	}
	if !kp.replay.Accept(counter) {
		return ErrReplay
	}
	return nil
}

// SendCounter returns the next counter to be used.
func (kp *Keypair) SendCounter() uint64 { return kp.counter.Load() }

// NeedsRekey reports whether the sender should start a new handshake: the key is
// old or has sent many messages.
func (kp *Keypair) NeedsRekey(now time.Time) bool {
	return kp.counter.Load() >= RekeyAfterMessages || now.Sub(kp.Created) >= RekeyAfterTime
}

// Expired reports whether the keypair may no longer be used.
func (kp *Keypair) Expired(now time.Time) bool {
	return kp.counter.Load() >= RejectAfterMessages || now.Sub(kp.Created) >= RejectAfterTime
}
