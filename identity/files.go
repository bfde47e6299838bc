package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// PEM block types of the files x0t writes.
const (
	PEMCertificate = "X0T CERTIFICATE"
	PEMNodeKey     = "X0T NODE KEY"
	PEMCAKey       = "X0T CA KEY"
)

var keyMagic = []byte("X0TK")

const keyVersion = 1

// nodeKeySize: magic, version, kind, X25519, ML-KEM seed, Ed25519 seed, ML-DSA seed.
const (
	nodeKeySize = 4 + 2 + X25519KeySize + MLKEMSeedSize + 32 + MLDSASeedSize
	caKeySize   = 4 + 2 + 32 + MLDSASeedSize
)

// ErrKeyMalformed reports an undecodable key file.
var ErrKeyMalformed = errors.New("identity: malformed key")

// MarshalBinary encodes the node's private keys (as seeds).
func (k *NodeKey) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, nodeKeySize)
	b = append(b, keyMagic...)
	b = append(b, keyVersion, KindNode)
	b = append(b, k.DH.Bytes()...)
	b = append(b, k.KEM.Bytes()...)
	b = append(b, k.Signing.edSeed[:]...)
	b = append(b, k.Signing.mlSeed[:]...)
	return b, nil
}

// ParseNodeKey decodes a node key written by MarshalBinary.
func ParseNodeKey(b []byte) (*NodeKey, error) {
	if len(b) != nodeKeySize || !bytes.Equal(b[:4], keyMagic) || b[4] != keyVersion || b[5] != KindNode {
		return nil, fmt.Errorf("%w: not a version %d node key", ErrKeyMalformed, keyVersion)
	}
	b = b[6:]
	dh, err := ecdh.X25519().NewPrivateKey(b[:X25519KeySize])
	if err != nil {
		return nil, fmt.Errorf("%w: X25519: %w", ErrKeyMalformed, err)
	}
	b = b[X25519KeySize:]
	kem, err := mlkem.NewDecapsulationKey768(b[:MLKEMSeedSize])
	if err != nil {
		return nil, fmt.Errorf("%w: ML-KEM-768: %w", ErrKeyMalformed, err)
	}
	b = b[MLKEMSeedSize:]
	sk, err := NewSigningKey(b[:32], b[32:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyMalformed, err)
	}
	return &NodeKey{DH: dh, KEM: kem, Signing: sk}, nil
}

// MarshalCAKey encodes a CA's signing key (as seeds).
func MarshalCAKey(k *SigningKey) []byte {
	b := make([]byte, 0, caKeySize)
	b = append(b, keyMagic...)
	b = append(b, keyVersion, KindCA)
	b = append(b, k.edSeed[:]...)
	return append(b, k.mlSeed[:]...)
}

// ParseCAKey decodes a CA key written by MarshalCAKey.
func ParseCAKey(b []byte) (*SigningKey, error) {
	if len(b) != caKeySize || !bytes.Equal(b[:4], keyMagic) || b[4] != keyVersion || b[5] != KindCA {
		return nil, fmt.Errorf("%w: not a version %d CA key", ErrKeyMalformed, keyVersion)
	}
	return NewSigningKey(b[6:38], b[38:])
}

// EncodePEM wraps a binary object in a PEM block.
func EncodePEM(typ string, b []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})
}

// DecodePEM returns the bytes of the single PEM block of type typ in data.
func DecodePEM(typ string, data []byte) ([]byte, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("identity: no PEM block %q found", typ)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("identity: PEM block is %q, want %q", block.Type, typ)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("identity: trailing data after PEM block %q", typ)
	}
	return block.Bytes, nil
}

// ParseCertificatePEM decodes a PEM certificate.
func ParseCertificatePEM(data []byte) (*Certificate, error) {
	b, err := DecodePEM(PEMCertificate, data)
	if err != nil {
		return nil, err
	}
	return ParseCertificate(b)
}

// ReadCertificate loads a PEM certificate file.
func ReadCertificate(path string) (*Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: read certificate: %w", err)
	}
	c, err := ParseCertificatePEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ReadNodeKey loads a PEM node key file.
func ReadNodeKey(path string) (*NodeKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: read node key: %w", err)
	}
	b, err := DecodePEM(PEMNodeKey, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k, err := ParseNodeKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ReadCAKey loads a PEM CA key file.
func ReadCAKey(path string) (*SigningKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: read CA key: %w", err)
	}
	b, err := DecodePEM(PEMCAKey, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k, err := ParseCAKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// WriteFile writes data atomically (temp file and rename) with the given mode,
// creating the directory if needed, so a crash never leaves half a key.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("identity: create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	return nil
}

// DefaultTrustDomain is used when a CA is made without one.
const DefaultTrustDomain = "x0t.mesh"

// NewCA makes a CA key and its self-signed certificate for mesh name.
func NewCA(name, trustDomain string, validity time.Duration, now time.Time) (*Certificate, *SigningKey, error) {
	if trustDomain == "" {
		trustDomain = DefaultTrustDomain
	}
	key, err := GenerateSigningKey()
	if err != nil {
		return nil, nil, err
	}
	c := &Certificate{
		Kind:        KindCA,
		Name:        name,
		TrustDomain: trustDomain,
		Mesh:        name,
		NotBefore:   now.Add(-time.Minute), // tolerate small clock skew
		NotAfter:    now.Add(validity),
		Keys:        PublicKeys{Signing: append([]byte(nil), key.Public().Bytes()...)},
	}
	if err := c.Sign(key); err != nil {
		return nil, nil, err
	}
	return c, key, nil
}

// NodeTemplate is what a CA is asked to certify about a node.
type NodeTemplate struct {
	Name     string
	Addrs    []netip.Prefix // if no IPv6 address is given, one is derived (MeshIPv6)
	Tags     []string
	Validity time.Duration
	Keys     PublicKeys
}

// IssueNode signs a node certificate under the CA.
func IssueNode(ca *Certificate, caKey *SigningKey, t NodeTemplate, now time.Time) (*Certificate, error) {
	if ca.Kind != KindCA {
		return nil, ErrCertNotCA
	}
	if caKey.Public().Fingerprint() != ca.Issuer {
		return nil, errors.New("identity: CA key does not match the CA certificate")
	}
	addrs := append([]netip.Prefix(nil), t.Addrs...)
	has4, has6 := false, false
	for _, p := range addrs {
		has4 = has4 || p.Addr().Is4()
		has6 = has6 || p.Addr().Is6()
	}
	if has4 && !has6 {
		v4, _ := (&Certificate{Addrs: addrs}).Addr(false)
		addrs = append(addrs, MeshIPv6(ca, v4.Addr()))
	}
	nb := now.Add(-time.Minute)
	na := now.Add(t.Validity)
	if na.After(ca.NotAfter) {
		na = ca.NotAfter // a node certificate never outlives its CA
	}
	c := &Certificate{
		Kind:        KindNode,
		Name:        t.Name,
		TrustDomain: ca.TrustDomain,
		Mesh:        ca.Mesh,
		Addrs:       addrs,
		Tags:        t.Tags,
		NotBefore:   nb,
		NotAfter:    na,
		Keys:        t.Keys,
	}
	if err := c.Sign(caKey); err != nil {
		return nil, err
	}
	return c, nil
}

// MeshULAPrefix returns the mesh's IPv6 unique local /48: fd00::/8 followed by 40
// bits of SHA-256 over the CA's key fingerprint (RFC 4193's random global ID).
func MeshULAPrefix(ca *Certificate) netip.Prefix {
	fp := sha256.Sum256(append([]byte("x0t ula v1"), ca.Issuer[:]...))
	var a [16]byte
	a[0] = 0xfd
	copy(a[1:6], fp[:5])
	return netip.PrefixFrom(netip.AddrFrom16(a), 48)
}

// MeshIPv6 derives a node's IPv6 overlay address from its IPv4 one: the mesh /48,
// subnet 0, and the IPv4 address in the low 32 bits (fdxx:xxxx:xxxx::6440:5 for
// 100.64.0.5). The prefix length is the mesh /48 so the route covers the mesh.
func MeshIPv6(ca *Certificate, v4 netip.Addr) netip.Prefix {
	a := MeshULAPrefix(ca).Addr().As16()
	b := v4.As4()
	copy(a[12:], b[:])
	return netip.PrefixFrom(netip.AddrFrom16(a), 48)
}
