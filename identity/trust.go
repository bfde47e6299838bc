package identity

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrRevoked reports a certificate of a node the mesh has revoked.
var ErrRevoked = errors.New("identity: node revoked")

// maxVerifyCache bounds the cache of certificates whose signatures verified.
const maxVerifyCache = 4096

// Trust decides which node certificates a node accepts: issued by the mesh CA,
// both signatures valid, inside the validity period, not revoked. Signature checks
// are cached by certificate fingerprint, since a peer presents the same
// certificate at every handshake and ML-DSA-65 verification is the costliest step;
// the validity period and revocation are checked every time.
type Trust struct {
	ca *Certificate

	mu       sync.Mutex
	verified map[[32]byte]*Certificate
	revoked  map[NodeID]struct{}
}

// NewTrust verifies the CA certificate and returns a Trust anchored on it.
func NewTrust(ca *Certificate, now time.Time) (*Trust, error) {
	if err := ca.VerifySelfSigned(now); err != nil {
		return nil, fmt.Errorf("identity: CA certificate: %w", err)
	}
	return &Trust{ca: ca, verified: map[[32]byte]*Certificate{}, revoked: map[NodeID]struct{}{}}, nil
}

// CA returns the trust anchor.
func (t *Trust) CA() *Certificate { return t.ca }

// Verify checks a node certificate as described on Trust.
func (t *Trust) Verify(c *Certificate, now time.Time) error {
	_, err := t.verify(c.Fingerprint(), c, nil, now)
	return err
}

// ParseVerified decodes a node certificate and checks it as Verify does. A
// certificate seen before is neither parsed nor signature-checked again: the
// handshake calls this for every initiation.
func (t *Trust) ParseVerified(raw []byte, now time.Time) (*Certificate, error) {
	return t.verify(sha256.Sum256(raw), nil, raw, now)
}

func (t *Trust) verify(fp [32]byte, c *Certificate, raw []byte, now time.Time) (*Certificate, error) {
	t.mu.Lock()
	cached := t.verified[fp]
	t.mu.Unlock()
	if cached == nil {
		if c == nil {
			var err error
			if c, err = ParseCertificate(raw); err != nil {
				return nil, err
			}
		}
		if err := c.Verify(t.ca, now); err != nil {
			return nil, err
		}
		t.mu.Lock()
		if len(t.verified) >= maxVerifyCache {
			for k := range t.verified { // drop an arbitrary entry
				delete(t.verified, k)
				break
			}
		}
		t.verified[fp] = c
		t.mu.Unlock()
		cached = c
	}
	if err := cached.CheckValidity(now); err != nil {
		return nil, err
	}
	if t.IsRevoked(cached.ID()) {
		return nil, fmt.Errorf("%w: %s (%s)", ErrRevoked, cached.Name, cached.ID().Short())
	}
	return cached, nil
}

// Revoke marks a node as revoked; Verify refuses its certificates from now on.
func (t *Trust) Revoke(id NodeID) {
	t.mu.Lock()
	t.revoked[id] = struct{}{}
	t.mu.Unlock()
}

// IsRevoked reports whether id was revoked.
func (t *Trust) IsRevoked(id NodeID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.revoked[id]
	return ok
}
