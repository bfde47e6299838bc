// Package handshake implements x0t's hybrid post-quantum authenticated key
// exchange as a pure state machine: bytes in, bytes out, no sockets, no timers.
//
// The pattern is Noise IK, extended with ML-KEM-768 beside every X25519 step:
//
//	initiation  I → R: e, E, es, S-kem(R), {cert_I}, ss, {timestamp}
//	response    R → I: e, ee, se, E-kem(I eph), S-kem(I), {}
//
// Every shared secret (four X25519 results and three ML-KEM-768 shared keys) is
// mixed into one HKDF chain, so the transport keys are secret if either X25519 or
// ML-KEM-768 holds. Forward secrecy comes from the ephemeral pair (ee and the
// ML-KEM key to I's ephemeral key); mutual authentication from the static pairs,
// each used in both algorithms: only R can decapsulate S-kem(R) and compute es,
// ss; only I can decapsulate S-kem(I) and compute se. The initiator sends its
// certificate encrypted (identity hiding); the responder checks it against the
// mesh CA. docs/protocol.md has the full derivation and test vectors.
package handshake

import (
	"bytes"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/wire"
)

// Errors that classify a rejected handshake message; the node counts them.
var (
	ErrDecrypt       = errors.New("handshake: message does not authenticate")
	ErrCertificate   = errors.New("handshake: peer certificate refused")
	ErrReplay        = errors.New("handshake: replayed initiation")
	ErrFlood         = errors.New("handshake: initiations from this peer too fast")
	ErrSuite         = errors.New("handshake: unsupported cipher suite")
	ErrWrongResponse = errors.New("handshake: response does not match the initiation")
)

// MinInitiationInterval limits how often one peer's initiations are processed.
const MinInitiationInterval = 20 * time.Millisecond

// Entropy supplies the handshake's random values. Production uses crypto/rand;
// the test vectors use fixed values so another implementation can reproduce them.
type Entropy interface {
	X25519() (*ecdh.PrivateKey, error)
	MLKEM() (*mlkem.DecapsulationKey768, error)
	Encapsulate(ek *mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error)
}

type systemEntropy struct{}

func (systemEntropy) X25519() (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(rand.Reader)
}
func (systemEntropy) MLKEM() (*mlkem.DecapsulationKey768, error) {
	return mlkem.GenerateKey768()
}
func (systemEntropy) Encapsulate(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
	ss, ct := ek.Encapsulate()
	return ss, ct, nil
}

// Config is a node's side of every handshake it takes part in.
type Config struct {
	Key     *identity.NodeKey
	Cert    *identity.Certificate // our certificate, sent (encrypted) when we initiate
	Trust   *identity.Trust       // decides which initiator certificates we accept
	Entropy Entropy               // nil means crypto/rand
	Now     func() time.Time      // nil means time.Now
}

// Handshaker runs handshakes for one node. It is safe for concurrent use.
type Handshaker struct {
	cfg     Config
	staticH [32]byte // transcript hash after mixing our static public keys
	cookies *CookieChecker

	mu         sync.Mutex
	lastTS     map[identity.NodeID][wire.TimestampSize]byte
	lastInitAt map[identity.NodeID]time.Time
	ssCache    map[identity.NodeID][]byte // static-static X25519 results
}

// maxStaticCache bounds the cache of static-static X25519 results.
const maxStaticCache = 4096

// staticShared returns DH(our static, peer static), computed once per peer as
// WireGuard does: it is the same for every handshake between two nodes.
func (hs *Handshaker) staticShared(peer *identity.Certificate) ([]byte, error) {
	id := peer.ID()
	hs.mu.Lock()
	ss, ok := hs.ssCache[id]
	hs.mu.Unlock()
	if ok {
		return ss, nil
	}
	ss, err := hs.cfg.Key.DH.ECDH(peer.DHPublic())
	if err != nil {
		return nil, err
	}
	hs.mu.Lock()
	if len(hs.ssCache) >= maxStaticCache {
		clear(hs.ssCache)
	}
	hs.ssCache[id] = ss
	hs.mu.Unlock()
	return ss, nil
}

// New returns a Handshaker for the node described by cfg.
func New(cfg Config) (*Handshaker, error) {
	if cfg.Key == nil || cfg.Cert == nil || cfg.Trust == nil {
		return nil, errors.New("handshake: config needs a key, a certificate and a trust anchor")
	}
	if !bytes.Equal(cfg.Cert.Keys.DH, cfg.Key.DH.PublicKey().Bytes()) ||
		!bytes.Equal(cfg.Cert.Keys.KEM, cfg.Key.KEM.EncapsulationKey().Bytes()) {
		return nil, errors.New("handshake: certificate does not match the node key")
	}
	if cfg.Entropy == nil {
		cfg.Entropy = systemEntropy{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handshaker{
		cfg:        cfg,
		staticH:    responderHash(cfg.Cert.Keys),
		cookies:    NewCookieChecker(cfg.Cert.Keys.DH),
		lastTS:     map[identity.NodeID][wire.TimestampSize]byte{},
		lastInitAt: map[identity.NodeID]time.Time{},
		ssCache:    map[identity.NodeID][]byte{},
	}, nil
}

// SetCert replaces our certificate (after a renewal); it must be for the same
// keys. Initiations from now on carry the new one.
func (hs *Handshaker) SetCert(c *identity.Certificate) error {
	if c.ID() != hs.cert().ID() {
		return errors.New("handshake: renewed certificate is for other keys")
	}
	hs.mu.Lock()
	hs.cfg.Cert = c
	hs.mu.Unlock()
	return nil
}

func (hs *Handshaker) cert() *identity.Certificate {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.cfg.Cert
}

// Cookies returns the checker for MACs on messages addressed to this node.
func (hs *Handshaker) Cookies() *CookieChecker { return hs.cookies }

// responderHash starts the transcript with the responder's static public keys,
// which the initiator must know in advance (pattern IK).
func responderHash(k identity.PublicKeys) [32]byte {
	s := newSymmetricState()
	s.mixHash(k.DH)
	s.mixHash(k.KEM)
	return s.h
}

// Keys are the result of a completed handshake.
type Keys struct {
	Send, Recv  [32]byte
	Suite       uint8
	LocalIndex  uint32
	RemoteIndex uint32
	Initiator   bool
	Peer        *identity.Certificate
}

// Initiator holds an initiation in flight until its response arrives.
type Initiator struct {
	hs        *Handshaker
	peer      *identity.Certificate
	sender    uint32
	suite     uint8
	eph       *ecdh.PrivateKey
	ephKEM    *mlkem.DecapsulationKey768
	sym       symmetricState
	Message   []byte    // the initiation, MACs not yet added
	CreatedAt time.Time // for retransmission and expiry
}

// Initiate starts a handshake with peer, whose certificate the caller has
// already verified. The returned Initiator's Message still needs its MACs (see
// CookieGenerator.AddMACs).
func (hs *Handshaker) Initiate(peer *identity.Certificate, sender uint32, suite uint8) (*Initiator, error) {
	if suite != wire.SuiteAES256GCM && suite != wire.SuiteChaCha20Poly1305 {
		return nil, ErrSuite
	}
	rs, rkem := peer.DHPublic(), peer.KEMPublic()
	if peer.Kind != identity.KindNode || rs == nil || rkem == nil {
		return nil, errors.New("handshake: peer certificate is not a parsed node certificate")
	}
	e, err := hs.cfg.Entropy.X25519()
	if err != nil {
		return nil, fmt.Errorf("handshake: ephemeral X25519: %w", err)
	}
	E, err := hs.cfg.Entropy.MLKEM()
	if err != nil {
		return nil, fmt.Errorf("handshake: ephemeral ML-KEM: %w", err)
	}
	in := &Initiator{hs: hs, peer: peer, sender: sender, suite: suite, eph: e, ephKEM: E, CreatedAt: hs.cfg.Now()}
	s := newSymmetricState()
	s.h = responderHash(peer.Keys)

	m := wire.Initiation{Sender: sender, Suite: suite}
	hdr := wire.AppendInitiation(nil, &wire.Initiation{Sender: sender, Suite: suite})[:wire.HandshakeHdr]
	s.mixHash(hdr)

	m.Ephemeral = e.PublicKey().Bytes()
	s.mixKey(m.Ephemeral)
	s.mixHash(m.Ephemeral)
	m.KEMKey = E.EncapsulationKey().Bytes()
	s.mixHash(m.KEMKey)

	es, err := e.ECDH(rs)
	if err != nil {
		return nil, fmt.Errorf("handshake: es: %w", err)
	}
	s.mixKey(es)

	ss1, ct1, err := hs.cfg.Entropy.Encapsulate(rkem)
	if err != nil {
		return nil, fmt.Errorf("handshake: encapsulate to responder: %w", err)
	}
	m.StaticCt = ct1
	s.mixHash(ct1)
	k := s.mixKeyAndKey(ss1)
	m.EncCert = s.encrypt(k, hs.cert().Bytes())

	ss, err := hs.staticShared(peer)
	if err != nil {
		return nil, fmt.Errorf("handshake: ss: %w", err)
	}
	k = s.mixKeyAndKey(ss)
	ts := Timestamp(hs.cfg.Now())
	m.EncTime = s.encrypt(k, ts[:])
	m.MAC1 = make([]byte, wire.MACSize)
	m.MAC2 = make([]byte, wire.MACSize)

	in.sym = s
	in.Message = wire.AppendInitiation(make([]byte, 0, wire.MaxInitiationSize), &m)
	return in, nil
}

// Peer returns the certificate of the peer this initiation is for.
func (in *Initiator) Peer() *identity.Certificate { return in.peer }

// Sender returns the initiator's index.
func (in *Initiator) Sender() uint32 { return in.sender }

// Finish processes the response and returns the transport keys. The caller has
// checked mac1 (and mac2) and that the response's receiver index is ours.
func (in *Initiator) Finish(msg []byte) (*Keys, error) {
	r, err := wire.ParseResponse(msg)
	if err != nil {
		return nil, err
	}
	if r.Receiver != in.sender {
		return nil, ErrWrongResponse
	}
	s := in.sym // work on a copy: a forged response must not spoil the real one
	s.mixHash(r.Header)
	s.mixKey(r.Ephemeral)
	s.mixHash(r.Ephemeral)
	re, err := ecdh.X25519().NewPublicKey(r.Ephemeral)
	if err != nil {
		return nil, ErrDecrypt
	}
	ee, err := in.eph.ECDH(re)
	if err != nil {
		return nil, ErrDecrypt
	}
	s.mixKey(ee)
	se, err := in.hs.cfg.Key.DH.ECDH(re)
	if err != nil {
		return nil, ErrDecrypt
	}
	s.mixKey(se)

	s.mixHash(r.EphCt)
	ss2, err := in.ephKEM.Decapsulate(r.EphCt)
	if err != nil {
		return nil, ErrDecrypt
	}
	s.mixKey(ss2)
	s.mixHash(r.StaticCt)
	ss3, err := in.hs.cfg.Key.KEM.Decapsulate(r.StaticCt)
	if err != nil {
		return nil, ErrDecrypt
	}
	k := s.mixKeyAndKey(ss3)
	if _, err := s.decrypt(k, r.EncEmpty); err != nil {
		return nil, ErrDecrypt
	}
	send, recv := s.split()
	return &Keys{
		Send: send, Recv: recv, Suite: in.suite,
		LocalIndex: in.sender, RemoteIndex: r.Sender,
		Initiator: true, Peer: in.peer,
	}, nil
}

// Incoming is a verified initiation awaiting our response.
type Incoming struct {
	hs        *Handshaker
	Peer      *identity.Certificate
	Timestamp [wire.TimestampSize]byte
	remote    uint32
	suite     uint8
	ephPub    *ecdh.PublicKey
	ephKEM    *mlkem.EncapsulationKey768
	sym       symmetricState
}

// Consume processes an initiation: it decrypts and verifies the initiator's
// certificate, rejects replays, and returns what is needed to respond. The
// caller has checked mac1 (and mac2 when under load).
func (hs *Handshaker) Consume(msg []byte) (*Incoming, error) {
	m, err := wire.ParseInitiation(msg)
	if err != nil {
		return nil, err
	}
	if m.Suite != wire.SuiteAES256GCM && m.Suite != wire.SuiteChaCha20Poly1305 {
		return nil, ErrSuite
	}
	s := symmetricState{ck: newSymmetricState().ck, h: hs.staticH}
	s.mixHash(m.Header)
	s.mixKey(m.Ephemeral)
	s.mixHash(m.Ephemeral)
	s.mixHash(m.KEMKey)
	ie, err := ecdh.X25519().NewPublicKey(m.Ephemeral)
	if err != nil {
		return nil, ErrDecrypt
	}
	ekem, err := mlkem.NewEncapsulationKey768(m.KEMKey)
	if err != nil {
		return nil, ErrDecrypt
	}
	es, err := hs.cfg.Key.DH.ECDH(ie)
	if err != nil {
		return nil, ErrDecrypt
	}
	s.mixKey(es)
	s.mixHash(m.StaticCt)
	ss1, err := hs.cfg.Key.KEM.Decapsulate(m.StaticCt)
	if err != nil {
		return nil, ErrDecrypt
	}
	k := s.mixKeyAndKey(ss1)
	certBytes, err := s.decrypt(k, m.EncCert)
	if err != nil {
		return nil, ErrDecrypt
	}
	now := hs.cfg.Now()
	cert, err := hs.cfg.Trust.ParseVerified(certBytes, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	ss, err := hs.staticShared(cert)
	if err != nil {
		return nil, ErrDecrypt
	}
	k = s.mixKeyAndKey(ss)
	ts, err := s.decrypt(k, m.EncTime)
	if err != nil {
		return nil, ErrDecrypt
	}

	in := &Incoming{hs: hs, Peer: cert, remote: m.Sender, suite: m.Suite, ephPub: ie, ephKEM: ekem, sym: s}
	copy(in.Timestamp[:], ts)

	// Replay and flood checks come last: only an authentic initiation may move the
	// stored timestamp forward.
	id := cert.ID()
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if last, ok := hs.lastTS[id]; ok && bytes.Compare(in.Timestamp[:], last[:]) <= 0 {
		return nil, ErrReplay
	}
	if at, ok := hs.lastInitAt[id]; ok && now.Sub(at) < MinInitiationInterval {
		return nil, ErrFlood
	}
	hs.lastTS[id] = in.Timestamp
	hs.lastInitAt[id] = now
	return in, nil
}

// RemoteIndex returns the initiator's index.
func (in *Incoming) RemoteIndex() uint32 { return in.remote }

// Respond makes the response (MACs not yet added) and the transport keys.
func (in *Incoming) Respond(sender uint32) (msg []byte, keys *Keys, err error) {
	hs := in.hs
	s := in.sym
	m := wire.Response{Sender: sender, Receiver: in.remote}
	s.mixHash(wire.AppendResponse(nil, &wire.Response{Sender: sender, Receiver: in.remote})[:wire.HandshakeHdr])
	e, err := hs.cfg.Entropy.X25519()
	if err != nil {
		return nil, nil, fmt.Errorf("handshake: ephemeral X25519: %w", err)
	}
	m.Ephemeral = e.PublicKey().Bytes()
	s.mixKey(m.Ephemeral)
	s.mixHash(m.Ephemeral)
	ee, err := e.ECDH(in.ephPub)
	if err != nil {
		return nil, nil, ErrDecrypt
	}
	s.mixKey(ee)
	se, err := e.ECDH(in.Peer.DHPublic())
	if err != nil {
		return nil, nil, ErrDecrypt
	}
	s.mixKey(se)

	ss2, ct2, err := hs.cfg.Entropy.Encapsulate(in.ephKEM)
	if err != nil {
		return nil, nil, fmt.Errorf("handshake: encapsulate to ephemeral: %w", err)
	}
	m.EphCt = ct2
	s.mixHash(ct2)
	s.mixKey(ss2)
	ss3, ct3, err := hs.cfg.Entropy.Encapsulate(in.Peer.KEMPublic())
	if err != nil {
		return nil, nil, fmt.Errorf("handshake: encapsulate to initiator: %w", err)
	}
	m.StaticCt = ct3
	s.mixHash(ct3)
	k := s.mixKeyAndKey(ss3)
	m.EncEmpty = s.encrypt(k, nil)
	m.MAC1 = make([]byte, wire.MACSize)
	m.MAC2 = make([]byte, wire.MACSize)

	i2r, r2i := s.split()
	return wire.AppendResponse(make([]byte, 0, wire.ResponseSize), &m), &Keys{
		Send: r2i, Recv: i2r, Suite: in.suite,
		LocalIndex: sender, RemoteIndex: in.remote,
		Initiator: false, Peer: in.Peer,
	}, nil
}

// Timestamp encodes t as TAI64N: 8 bytes of seconds since 1970 plus 2^62, and 4
// bytes of nanoseconds, big-endian, so byte order is time order.
func Timestamp(t time.Time) [wire.TimestampSize]byte {
	var b [wire.TimestampSize]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.Unix())+(1<<62))
	binary.BigEndian.PutUint32(b[8:], uint32(t.Nanosecond()))
	return b
}
