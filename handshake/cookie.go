package handshake

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/x0tta6bl4/x0t/wire"
	"golang.org/x/crypto/chacha20poly1305"
)

// DoS protection follows WireGuard's cookie scheme. Every handshake message
// carries mac1, keyed by the receiver's static X25519 public key: a node answers
// only messages from someone who knows its public key. A node under load also
// demands mac2, keyed by a cookie that binds the sender's address; without it the
// node does no expensive work and answers with a small cookie reply instead, so
// a flood from spoofed addresses costs it one MAC per packet.

const (
	labelMAC1   = "mac1----"
	labelCookie = "cookie--"
	// CookieRefresh is how often the responder's cookie secret changes and how
	// long an initiator may use a cookie.
	CookieRefresh = 120 * time.Second
)

var (
	errMAC1 = errors.New("handshake: bad mac1")
	// ErrCookieRequired means the receiver is under load and the message lacks a
	// valid mac2: answer with a cookie reply, do nothing else.
	ErrCookieRequired = errors.New("handshake: cookie required")
)

func mac16(key, msg []byte) [16]byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	var out [16]byte
	copy(out[:], m.Sum(nil))
	return out
}

// CookieChecker validates MACs on messages addressed to one static key and makes
// cookie replies. It is safe for concurrent use.
type CookieChecker struct {
	mac1Key   [32]byte
	cookieKey [32]byte

	mu        sync.Mutex
	secret    [32]byte
	secretAt  time.Time
	secretSet bool
}

// NewCookieChecker returns a checker for messages to the node whose static
// X25519 public key is staticPub.
func NewCookieChecker(staticPub []byte) *CookieChecker {
	return &CookieChecker{
		mac1Key:   hash([]byte(labelMAC1), staticPub),
		cookieKey: hash([]byte(labelCookie), staticPub),
	}
}

// CheckMAC1 verifies mac1 of a handshake message.
func (c *CookieChecker) CheckMAC1(msg []byte) error {
	off, _, ok := wire.MACOffsets(msg)
	if !ok {
		return errMAC1
	}
	want := mac16(c.mac1Key[:], msg[:off])
	if subtle.ConstantTimeCompare(want[:], msg[off:off+wire.MACSize]) != 1 {
		return errMAC1
	}
	return nil
}

func (c *CookieChecker) cookie(src netip.AddrPort, now time.Time) [16]byte {
	c.mu.Lock()
	if !c.secretSet || now.Sub(c.secretAt) > CookieRefresh {
		rand.Read(c.secret[:])
		c.secretAt = now
		c.secretSet = true
	}
	secret := c.secret
	c.mu.Unlock()
	a := src.Addr().As16()
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], src.Port())
	return mac16(secret[:], append(a[:], port[:]...))
}

// CheckMAC2 verifies mac2 against the cookie for src.
func (c *CookieChecker) CheckMAC2(msg []byte, src netip.AddrPort, now time.Time) error {
	_, off, ok := wire.MACOffsets(msg)
	if !ok {
		return ErrCookieRequired
	}
	ck := c.cookie(src, now)
	want := mac16(ck[:], msg[:off])
	if subtle.ConstantTimeCompare(want[:], msg[off:off+wire.MACSize]) != 1 {
		return ErrCookieRequired
	}
	return nil
}

// MakeReply returns a cookie reply to msg from src: the cookie encrypted with
// XChaCha20-Poly1305 under a key derived from our static public key, with the
// message's mac1 as associated data, so only the real sender can use it.
func (c *CookieChecker) MakeReply(msg []byte, src netip.AddrPort, now time.Time) ([]byte, error) {
	off, _, ok := wire.MACOffsets(msg)
	if !ok {
		return nil, errMAC1
	}
	ck := c.cookie(src, now)
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(nonce)
	aead, _ := chacha20poly1305.NewX(c.cookieKey[:])
	enc := aead.Seal(nil, nonce, ck[:], msg[off:off+wire.MACSize])
	return wire.AppendCookieReply(nil, &wire.CookieReply{
		Receiver:  wire.SenderIndex(msg),
		Nonce:     nonce,
		EncCookie: enc,
	}), nil
}

// CookieGenerator adds MACs to messages sent to one peer and keeps the cookie
// that peer last gave us. It is safe for concurrent use.
type CookieGenerator struct {
	mac1Key   [32]byte
	cookieKey [32]byte

	mu       sync.Mutex
	lastMAC1 [16]byte
	haveMAC1 bool
	cookie   [16]byte
	cookieAt time.Time
	hasCk    bool
}

// NewCookieGenerator returns a generator for messages to the peer whose static
// X25519 public key is peerPub.
func NewCookieGenerator(peerPub []byte) *CookieGenerator {
	return &CookieGenerator{
		mac1Key:   hash([]byte(labelMAC1), peerPub),
		cookieKey: hash([]byte(labelCookie), peerPub),
	}
}

// AddMACs fills in mac1 and, with a fresh cookie, mac2 of a handshake message.
func (g *CookieGenerator) AddMACs(msg []byte, now time.Time) {
	off1, off2, ok := wire.MACOffsets(msg)
	if !ok {
		return
	}
	m1 := mac16(g.mac1Key[:], msg[:off1])
	copy(msg[off1:], m1[:])
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastMAC1, g.haveMAC1 = m1, true
	if !g.hasCk || now.Sub(g.cookieAt) >= CookieRefresh {
		clear(msg[off2 : off2+wire.MACSize])
		return
	}
	m2 := mac16(g.cookie[:], msg[:off2])
	copy(msg[off2:], m2[:])
}

// ConsumeReply decrypts a cookie reply to the last message we sent and keeps the
// cookie for the next one.
func (g *CookieGenerator) ConsumeReply(r *wire.CookieReply, now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.haveMAC1 {
		return errors.New("handshake: cookie reply without a message to answer")
	}
	aead, _ := chacha20poly1305.NewX(g.cookieKey[:])
	ck, err := aead.Open(nil, r.Nonce, r.EncCookie, g.lastMAC1[:])
	if err != nil {
		return errors.New("handshake: cookie reply does not decrypt")
	}
	copy(g.cookie[:], ck)
	g.cookieAt = now
	g.hasCk = true
	return nil
}
