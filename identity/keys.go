// Package identity holds a node's and a CA's long-term keys, the hybrid
// (Ed25519 + ML-DSA-65) signature used for everything the mesh signs, and the
// compact node certificate.
//
// Every signature is hybrid: a signed object carries an Ed25519 signature and an
// ML-DSA-65 signature over the same bytes, and a verifier requires both. A forgery
// therefore needs a break of both schemes. Each use has its own context label
// (certificate, netmap, route advert, ...), so a signature made for one purpose is
// never valid for another.
package identity

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/x0tta6bl4/x0t/internal/simd"
)

// Sizes of the public keys and signatures carried in certificates.
const (
	X25519KeySize      = 32
	MLKEMEncapsKeySize = mlkem.EncapsulationKeySize768 // 1184
	MLKEMSeedSize      = mlkem.SeedSize                // 64
	Ed25519KeySize     = ed25519.PublicKeySize         // 32
	MLDSAKeySize       = mldsa65.PublicKeySize         // 1952
	MLDSASeedSize      = mldsa65.SeedSize              // 32
	Ed25519SigSize     = ed25519.SignatureSize         // 64
	MLDSASigSize       = mldsa65.SignatureSize         // 3309
	SignatureSize      = Ed25519SigSize + MLDSASigSize // hybrid signature
	VerifyingKeySize   = Ed25519KeySize + MLDSAKeySize
)

// Errors returned by hybrid signature verification. Each names the half that failed,
// so a rejection can be counted by reason.
var (
	ErrBadEd25519Signature = errors.New("identity: Ed25519 signature does not verify")
	ErrBadMLDSASignature   = errors.New("identity: ML-DSA-65 signature does not verify")
)

// SigningKey is a hybrid Ed25519 + ML-DSA-65 private key.
type SigningKey struct {
	edSeed [ed25519.SeedSize]byte
	mlSeed [MLDSASeedSize]byte
	ed     ed25519.PrivateKey
	ml     *mldsa65.PrivateKey
	pub    VerifyingKey
}

// VerifyingKey is the public half of a SigningKey.
type VerifyingKey struct {
	ed  ed25519.PublicKey
	ml  *mldsa65.PublicKey
	raw [VerifyingKeySize]byte // ed25519 || ml-dsa-65
}

// GenerateSigningKey returns a fresh hybrid signing key.
func GenerateSigningKey() (*SigningKey, error) {
	var edSeed [ed25519.SeedSize]byte
	var mlSeed [MLDSASeedSize]byte
	if _, err := rand.Read(edSeed[:]); err != nil {
		return nil, fmt.Errorf("identity: entropy: %w", err)
	}
	if _, err := rand.Read(mlSeed[:]); err != nil {
		return nil, fmt.Errorf("identity: entropy: %w", err)
	}
	return NewSigningKey(edSeed[:], mlSeed[:])
}

// NewSigningKey derives a hybrid signing key from its two seeds.
func NewSigningKey(edSeed, mlSeed []byte) (*SigningKey, error) {
	if len(edSeed) != ed25519.SeedSize || len(mlSeed) != MLDSASeedSize {
		return nil, errors.New("identity: signing key seeds have the wrong length")
	}
	defer simd.ClearUpper() // after circl's AVX2 code
	k := &SigningKey{}
	copy(k.edSeed[:], edSeed)
	copy(k.mlSeed[:], mlSeed)
	k.ed = ed25519.NewKeyFromSeed(edSeed)
	mlPub, mlPriv := mldsa65.NewKeyFromSeed(&k.mlSeed)
	k.ml = mlPriv
	k.pub.ed = k.ed.Public().(ed25519.PublicKey)
	k.pub.ml = mlPub
	copy(k.pub.raw[:Ed25519KeySize], k.pub.ed)
	mlPub.Pack((*[MLDSAKeySize]byte)(k.pub.raw[Ed25519KeySize:]))
	return k, nil
}

// Public returns the verifying key.
func (k *SigningKey) Public() *VerifyingKey { return &k.pub }

// Sign returns the hybrid signature (Ed25519 || ML-DSA-65) of msg under the
// context label. Ed25519 signs label || 0x00 || msg; ML-DSA-65 signs msg with the
// label as its FIPS 204 context string, so both halves are domain separated.
func (k *SigningKey) Sign(label string, msg []byte) []byte {
	defer simd.ClearUpper() // after circl's AVX2 code
	sig := make([]byte, SignatureSize)
	copy(sig, ed25519.Sign(k.ed, edMessage(label, msg)))
	// Hedged signing (fresh randomness mixed in) resists fault attacks.
	if err := mldsa65.SignTo(k.ml, msg, []byte(label), true, sig[Ed25519SigSize:]); err != nil {
		// Only a label over 255 bytes fails, and labels are package constants.
		panic("identity: ML-DSA-65 sign: " + err.Error())
	}
	return sig
}

func edMessage(label string, msg []byte) []byte {
	b := make([]byte, 0, len(label)+1+len(msg))
	b = append(b, label...)
	b = append(b, 0)
	return append(b, msg...)
}

// ParseVerifyingKey decodes Ed25519 || ML-DSA-65 public keys.
func ParseVerifyingKey(b []byte) (*VerifyingKey, error) {
	if len(b) != VerifyingKeySize {
		return nil, fmt.Errorf("identity: verifying key is %d bytes, want %d", len(b), VerifyingKeySize)
	}
	defer simd.ClearUpper() // after circl's AVX2 code
	v := &VerifyingKey{}
	copy(v.raw[:], b)
	v.ed = ed25519.PublicKey(v.raw[:Ed25519KeySize])
	v.ml = new(mldsa65.PublicKey)
	if err := v.ml.UnmarshalBinary(v.raw[Ed25519KeySize:]); err != nil {
		return nil, fmt.Errorf("identity: ML-DSA-65 public key: %w", err)
	}
	return v, nil
}

// Bytes returns Ed25519 || ML-DSA-65 public keys. The caller must not modify it.
func (v *VerifyingKey) Bytes() []byte { return v.raw[:] }

// Fingerprint is SHA-256 of the verifying key bytes: a CA's identity as an issuer.
func (v *VerifyingKey) Fingerprint() [32]byte { return sha256.Sum256(v.raw[:]) }

// Verify checks a hybrid signature made by Sign with the same label. Both halves
// must verify; the error names the first half that does not.
func (v *VerifyingKey) Verify(label string, msg, sig []byte) error {
	if len(sig) != SignatureSize {
		return fmt.Errorf("identity: signature is %d bytes, want %d", len(sig), SignatureSize)
	}
	if !ed25519.Verify(v.ed, edMessage(label, msg), sig[:Ed25519SigSize]) {
		return ErrBadEd25519Signature
	}
	defer simd.ClearUpper() // after circl's AVX2 code
	if !mldsa65.Verify(v.ml, msg, []byte(label), sig[Ed25519SigSize:]) {
		return ErrBadMLDSASignature
	}
	return nil
}

// NodeKey is a node's static private keys: X25519 and ML-KEM-768 for key
// agreement in the handshake, and the hybrid signing key for what the node signs.
type NodeKey struct {
	DH      *ecdh.PrivateKey
	KEM     *mlkem.DecapsulationKey768
	Signing *SigningKey
}

// GenerateNodeKey returns fresh static keys for a node. Private keys are made
// where they are used and never leave the node.
func GenerateNodeKey() (*NodeKey, error) {
	dh, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: X25519 key: %w", err)
	}
	kem, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, fmt.Errorf("identity: ML-KEM-768 key: %w", err)
	}
	sk, err := GenerateSigningKey()
	if err != nil {
		return nil, err
	}
	return &NodeKey{DH: dh, KEM: kem, Signing: sk}, nil
}

// PublicKeys returns the public halves that a certificate binds to a node.
func (k *NodeKey) PublicKeys() PublicKeys {
	return PublicKeys{
		DH:      k.DH.PublicKey().Bytes(),
		KEM:     k.KEM.EncapsulationKey().Bytes(),
		Signing: append([]byte(nil), k.Signing.Public().Bytes()...),
	}
}

// PublicKeys are a node's public keys as raw bytes.
type PublicKeys struct {
	DH      []byte // X25519, 32 bytes
	KEM     []byte // ML-KEM-768 encapsulation key, 1184 bytes
	Signing []byte // Ed25519 || ML-DSA-65, 1984 bytes
}

// Validate checks the lengths and that each key parses.
func (p PublicKeys) Validate() error {
	_, _, err := p.parse()
	return err
}

func (p PublicKeys) parse() (*ecdh.PublicKey, *mlkem.EncapsulationKey768, error) {
	if len(p.DH) != X25519KeySize {
		return nil, nil, fmt.Errorf("identity: X25519 key is %d bytes, want %d", len(p.DH), X25519KeySize)
	}
	dh, err := ecdh.X25519().NewPublicKey(p.DH)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: X25519 key: %w", err)
	}
	kem, err := mlkem.NewEncapsulationKey768(p.KEM)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: ML-KEM-768 key: %w", err)
	}
	if _, err := ParseVerifyingKey(p.Signing); err != nil {
		return nil, nil, err
	}
	return dh, kem, nil
}

// NodeIDSize is the length of a NodeID.
const NodeIDSize = 16

// NodeID names a node on the wire: the first 16 bytes of SHA-256 over a label and
// its public keys. It is self-certifying: no one can claim a node's ID without
// holding keys that hash to it, and the CA binds it to a name and addresses.
type NodeID [NodeIDSize]byte

// ID computes the NodeID of these keys.
func (p PublicKeys) ID() NodeID {
	h := sha256.New()
	h.Write([]byte("x0t node id v1"))
	h.Write(p.DH)
	h.Write(p.KEM)
	h.Write(p.Signing)
	var id NodeID
	copy(id[:], h.Sum(nil))
	return id
}

// String returns the ID in hex.
func (id NodeID) String() string { return fmt.Sprintf("%x", id[:]) }

// Short returns the first 8 hex digits, for logs.
func (id NodeID) Short() string { return fmt.Sprintf("%x", id[:4]) }
