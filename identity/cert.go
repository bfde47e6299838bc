package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"time"
)

// Certificate kinds.
const (
	KindCA   = 1
	KindNode = 2
)

// certVersion 1 means: hybrid Ed25519 + ML-DSA-65 signatures, X25519 + ML-KEM-768
// node keys, the layout documented in docs/protocol.md. A version byte inside the
// signed body stops a signature being read under another algorithm set.
const certVersion = 1

var certMagic = []byte("X0TC")

// Signature labels: each signed kind of object has its own.
const labelCert = "x0t-cert-v1"

// Limits keep certificates small and their decoding bounded.
const (
	MaxNameLen  = 63
	MaxTags     = 32
	MaxAddrs    = 8
	MaxCertSize = 8192
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
var domainRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// Certificate binds a node's (or a CA's) public keys to its name, mesh and overlay
// addresses for a period, under the hybrid signature of a CA.
type Certificate struct {
	Kind        uint8
	Name        string // node name (or CA name)
	TrustDomain string // SPIFFE trust domain
	Mesh        string
	Addrs       []netip.Prefix // overlay addresses, each with the mesh prefix length
	Tags        []string
	NotBefore   time.Time // second precision
	NotAfter    time.Time
	Issuer      [32]byte // fingerprint of the issuing CA's verifying key
	Keys        PublicKeys
	Signature   []byte // hybrid signature over the body, SignatureSize bytes

	raw    []byte // encoded form, set by Parse and Sign
	dhPub  *ecdh.PublicKey
	kemPub *mlkem.EncapsulationKey768
	id     NodeID
}

// Errors that classify a certificate rejection.
var (
	ErrCertMalformed   = errors.New("identity: malformed certificate")
	ErrCertExpired     = errors.New("identity: certificate expired")
	ErrCertNotYetValid = errors.New("identity: certificate not yet valid")
	ErrCertWrongIssuer = errors.New("identity: certificate issued by another CA")
	ErrCertNotCA       = errors.New("identity: not a CA certificate")
	ErrCertNotNode     = errors.New("identity: not a node certificate")
)

// SPIFFEID returns spiffe://<trust-domain>/mesh/<mesh>/node/<name> for a node
// certificate and spiffe://<trust-domain>/mesh/<mesh> for a CA.
func (c *Certificate) SPIFFEID() string {
	if c.Kind == KindCA {
		return fmt.Sprintf("spiffe://%s/mesh/%s", c.TrustDomain, c.Mesh)
	}
	return fmt.Sprintf("spiffe://%s/mesh/%s/node/%s", c.TrustDomain, c.Mesh, c.Name)
}

// ID returns the NodeID of the certificate's keys.
func (c *Certificate) ID() NodeID {
	if c.Kind == KindNode && c.dhPub != nil {
		return c.id // computed once by check
	}
	return c.Keys.ID()
}

// DHPublic returns the node's static X25519 key, parsed once.
func (c *Certificate) DHPublic() *ecdh.PublicKey { return c.dhPub }

// KEMPublic returns the node's static ML-KEM-768 encapsulation key, parsed once.
func (c *Certificate) KEMPublic() *mlkem.EncapsulationKey768 { return c.kemPub }

// Bytes returns the encoded certificate. It is set only on signed or parsed
// certificates; the caller must not modify it.
func (c *Certificate) Bytes() []byte { return c.raw }

// Fingerprint is SHA-256 of the encoded certificate.
func (c *Certificate) Fingerprint() [32]byte { return sha256.Sum256(c.raw) }

// VerifyingKey parses the certificate's hybrid signing public key.
func (c *Certificate) VerifyingKey() (*VerifyingKey, error) {
	return ParseVerifyingKey(c.Keys.Signing)
}

// Addr returns the first overlay address of the given family, if any.
func (c *Certificate) Addr(v6 bool) (netip.Prefix, bool) {
	for _, p := range c.Addrs {
		if p.Addr().Is6() == v6 {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// check validates the fields that do not need a signature.
func (c *Certificate) check() error {
	if c.Kind != KindCA && c.Kind != KindNode {
		return fmt.Errorf("%w: kind %d", ErrCertMalformed, c.Kind)
	}
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("%w: name %q: want 1-63 of a-z, 0-9, '-'", ErrCertMalformed, c.Name)
	}
	if !nameRE.MatchString(c.Mesh) {
		return fmt.Errorf("%w: mesh %q: want 1-63 of a-z, 0-9, '-'", ErrCertMalformed, c.Mesh)
	}
	if !domainRE.MatchString(c.TrustDomain) {
		return fmt.Errorf("%w: trust domain %q", ErrCertMalformed, c.TrustDomain)
	}
	if len(c.Addrs) > MaxAddrs {
		return fmt.Errorf("%w: %d addresses, at most %d", ErrCertMalformed, len(c.Addrs), MaxAddrs)
	}
	for _, p := range c.Addrs {
		if !p.IsValid() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return fmt.Errorf("%w: address %v", ErrCertMalformed, p)
		}
	}
	if len(c.Tags) > MaxTags {
		return fmt.Errorf("%w: %d tags, at most %d", ErrCertMalformed, len(c.Tags), MaxTags)
	}
	for _, t := range c.Tags {
		if !nameRE.MatchString(t) {
			return fmt.Errorf("%w: tag %q: want 1-63 of a-z, 0-9, '-'", ErrCertMalformed, t)
		}
	}
	if !c.NotAfter.After(c.NotBefore) {
		return fmt.Errorf("%w: validity ends before it starts", ErrCertMalformed)
	}
	if c.Kind == KindNode {
		// Keep the parsed key-agreement keys: every handshake with this peer uses them.
		dh, kem, err := c.Keys.parse()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCertMalformed, err)
		}
		c.dhPub, c.kemPub = dh, kem
		c.id = c.Keys.ID()
	} else {
		if len(c.Keys.DH) != 0 || len(c.Keys.KEM) != 0 {
			return fmt.Errorf("%w: CA certificate carries key-agreement keys", ErrCertMalformed)
		}
		if _, err := ParseVerifyingKey(c.Keys.Signing); err != nil {
			return fmt.Errorf("%w: %w", ErrCertMalformed, err)
		}
	}
	return nil
}

// body encodes everything the signature covers. The layout is in docs/protocol.md.
func (c *Certificate) body() []byte {
	b := make([]byte, 0, 1024+len(c.Keys.KEM)+len(c.Keys.Signing))
	b = append(b, certMagic...)
	b = append(b, certVersion, c.Kind)
	b = appendString(b, c.Name)
	b = appendString(b, c.TrustDomain)
	b = appendString(b, c.Mesh)
	b = append(b, byte(len(c.Addrs)))
	for _, p := range c.Addrs {
		a := p.Addr().AsSlice()
		b = append(b, byte(len(a)))
		b = append(b, a...)
		b = append(b, byte(p.Bits()))
	}
	b = append(b, byte(len(c.Tags)))
	for _, t := range c.Tags {
		b = appendString(b, t)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(c.NotBefore.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.NotAfter.Unix()))
	b = append(b, c.Issuer[:]...)
	if c.Kind == KindNode {
		b = append(b, c.Keys.DH...)
		b = append(b, c.Keys.KEM...)
	}
	b = append(b, c.Keys.Signing...)
	return b
}

func appendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// Sign fills in Issuer and Signature with the CA's key and encodes the
// certificate. For a self-signed CA certificate, pass the CA's own key; the
// Issuer is then its own fingerprint.
func (c *Certificate) Sign(ca *SigningKey) error {
	c.NotBefore = c.NotBefore.Truncate(time.Second)
	c.NotAfter = c.NotAfter.Truncate(time.Second)
	if err := c.check(); err != nil {
		return err
	}
	c.Issuer = ca.Public().Fingerprint()
	body := c.body()
	c.Signature = ca.Sign(labelCert, body)
	c.raw = append(body, c.Signature...)
	if len(c.raw) > MaxCertSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrCertMalformed, len(c.raw), MaxCertSize)
	}
	return nil
}

// ParseCertificate decodes a binary certificate. It checks the encoding and the
// fields but not the signature: call Verify for that.
func ParseCertificate(raw []byte) (*Certificate, error) {
	if len(raw) > MaxCertSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrCertMalformed, len(raw), MaxCertSize)
	}
	r := reader{b: raw}
	if !bytes.Equal(r.next(4), certMagic) {
		return nil, fmt.Errorf("%w: bad magic", ErrCertMalformed)
	}
	if v := r.byte(); v != certVersion {
		return nil, fmt.Errorf("%w: version %d not supported", ErrCertMalformed, v)
	}
	c := &Certificate{Kind: r.byte()}
	c.Name = r.string()
	c.TrustDomain = r.string()
	c.Mesh = r.string()
	n := int(r.byte())
	if n > MaxAddrs {
		return nil, fmt.Errorf("%w: %d addresses, at most %d", ErrCertMalformed, n, MaxAddrs)
	}
	for range n {
		l := int(r.byte())
		if l != 4 && l != 16 {
			return nil, fmt.Errorf("%w: address length %d", ErrCertMalformed, l)
		}
		a, _ := netip.AddrFromSlice(r.next(l))
		p := netip.PrefixFrom(a, int(r.byte()))
		if !p.IsValid() {
			return nil, fmt.Errorf("%w: address: bad prefix", ErrCertMalformed)
		}
		c.Addrs = append(c.Addrs, p)
	}
	n = int(r.byte())
	if n > MaxTags {
		return nil, fmt.Errorf("%w: %d tags, at most %d", ErrCertMalformed, n, MaxTags)
	}
	for range n {
		c.Tags = append(c.Tags, r.string())
	}
	c.NotBefore = time.Unix(int64(r.uint64()), 0).UTC()
	c.NotAfter = time.Unix(int64(r.uint64()), 0).UTC()
	copy(c.Issuer[:], r.next(32))
	if c.Kind == KindNode {
		c.Keys.DH = r.next(X25519KeySize)
		c.Keys.KEM = r.next(MLKEMEncapsKeySize)
	}
	c.Keys.Signing = r.next(VerifyingKeySize)
	c.Signature = r.next(SignatureSize)
	if r.err != nil {
		return nil, fmt.Errorf("%w: truncated", ErrCertMalformed)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCertMalformed, len(r.b))
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	c.raw = raw[:len(raw):len(raw)]
	return c, nil
}

// reader decodes the certificate layout; the first short read sets err and every
// later read returns zero values, so parsing code checks once at the end.
type reader struct {
	b   []byte
	err error
}

func (r *reader) next(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = ErrCertMalformed
		return make([]byte, n)
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte     { return r.next(1)[0] }
func (r *reader) uint64() uint64 { return binary.BigEndian.Uint64(r.next(8)) }
func (r *reader) string() string { return string(r.next(int(r.byte()))) }

// signedBody is the part of the encoding that the signature covers.
func (c *Certificate) signedBody() []byte { return c.raw[:len(c.raw)-SignatureSize] }

// VerifySelfSigned checks a CA certificate: kind, both signatures under its own
// key, and validity at now.
func (c *Certificate) VerifySelfSigned(now time.Time) error {
	if c.Kind != KindCA {
		return ErrCertNotCA
	}
	return c.verifyWith(c, now)
}

// Verify checks a node certificate against its CA: the issuer, both halves of the
// hybrid signature, and the validity period at now.
func (c *Certificate) Verify(ca *Certificate, now time.Time) error {
	if c.Kind != KindNode {
		return ErrCertNotNode
	}
	if ca.Kind != KindCA {
		return ErrCertNotCA
	}
	if c.Mesh != ca.Mesh || c.TrustDomain != ca.TrustDomain {
		return fmt.Errorf("%w: mesh %s/%s, CA is for %s/%s", ErrCertWrongIssuer, c.TrustDomain, c.Mesh, ca.TrustDomain, ca.Mesh)
	}
	return c.verifyWith(ca, now)
}

func (c *Certificate) verifyWith(ca *Certificate, now time.Time) error {
	if c.raw == nil {
		return fmt.Errorf("%w: not encoded", ErrCertMalformed)
	}
	key, err := ca.VerifyingKey()
	if err != nil {
		return err
	}
	if c.Issuer != key.Fingerprint() {
		return ErrCertWrongIssuer
	}
	if err := key.Verify(labelCert, c.signedBody(), c.Signature); err != nil {
		return fmt.Errorf("identity: certificate %q: %w", c.Name, err)
	}
	return c.CheckValidity(now)
}

// CheckValidity reports whether now is inside the validity period.
func (c *Certificate) CheckValidity(now time.Time) error {
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%w: valid from %s", ErrCertNotYetValid, c.NotBefore.Format(time.RFC3339))
	}
	if !now.Before(c.NotAfter) {
		return fmt.Errorf("%w: %s", ErrCertExpired, c.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// Equal reports whether two certificates have the same encoding.
func (c *Certificate) Equal(o *Certificate) bool { return bytes.Equal(c.raw, o.raw) }

// HasTag reports whether the certificate carries tag t.
func (c *Certificate) HasTag(t string) bool { return slices.Contains(c.Tags, t) }
