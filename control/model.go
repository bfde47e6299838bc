package control

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/store"
)

// Entity kinds in the store.
const (
	kindOrg        = "org"
	kindUser       = "user"
	kindKey        = "apikey"
	kindMesh       = "mesh"
	kindToken      = "token"
	kindNode       = "node"
	kindPolicy     = "policy"     // ID: the mesh ID
	kindRevocation = "revocation" // a deleted node whose certificate has not expired; ID: node ID
)

// The JSON each kind stores. Field names are part of the audit log, so they
// change only with a migration of old events' readers.

type orgData struct {
	Name     string `json:"name"`
	Operator bool   `json:"operator,omitempty"`
}

type userData struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	Role  string `json:"role"`
}

type keyData struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	User      string     `json:"user"`
	Prefix    string     `json:"prefix"`
	Hash      string     `json:"hash"` // SHA-256 of the secret (redacted in the audit API)
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

type meshData struct {
	Name         string   `json:"name"`
	Description  string   `json:"description,omitempty"`
	IPv4Prefix   string   `json:"ipv4_prefix"`
	PQProfile    string   `json:"pq_profile"`
	Transports   []string `json:"transports"`
	CertValidity int64    `json:"cert_validity_s"`
	TrustDomain  string   `json:"trust_domain"`
	CACert       []byte   `json:"ca_cert"`
	CAKey        []byte   `json:"ca_key"` // sealed (secrets.go; redacted in the audit API)
}

type tokenData struct {
	Description string     `json:"description,omitempty"`
	Tags        []string   `json:"tags,omitempty"`
	AutoApprove bool       `json:"auto_approve,omitempty"`
	MaxUses     int        `json:"max_uses"`
	Uses        int        `json:"uses"`
	ExpiresAt   time.Time  `json:"expires_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Prefix      string     `json:"prefix"`
	Hash        string     `json:"hash"` // SHA-256 of the secret (redacted in the audit API)
	CreatedBy   string     `json:"created_by"`
}

func (t *tokenData) valid(now time.Time) error {
	switch {
	case t.RevokedAt != nil:
		return fmt.Errorf("join token revoked")
	case !now.Before(t.ExpiresAt):
		return fmt.Errorf("join token expired at %s", t.ExpiresAt.Format(time.RFC3339))
	case t.MaxUses > 0 && t.Uses >= t.MaxUses:
		return fmt.Errorf("join token used up (%d uses)", t.MaxUses)
	}
	return nil
}

type nodeData struct {
	Name       string         `json:"name"`
	Status     string         `json:"status"`
	Tags       []string       `json:"tags,omitempty"`
	Keys       api.PublicKeys `json:"keys"`
	IPv4       netip.Addr     `json:"ipv4"`
	IPv6       netip.Addr     `json:"ipv6"`
	Endpoints  []string       `json:"endpoints,omitempty"`
	Cert       []byte         `json:"cert,omitempty"`
	NotAfter   *time.Time     `json:"cert_not_after,omitempty"`
	Token      string         `json:"token,omitempty"`
	ApprovedAt *time.Time     `json:"approved_at,omitempty"`
	RevokedAt  *time.Time     `json:"revoked_at,omitempty"`
}

type policyData struct {
	Text string `json:"text"` // the policy's canonical JSON (policy.Marshal)
}

type revocationData struct {
	Name     string     `json:"name"`
	IPv4     netip.Addr `json:"ipv4"`
	NotAfter time.Time  `json:"not_after"`
}

var nameRE = regexp.MustCompile(apitypes.NamePattern)

// Unique keys.
func orgKey(name string) string            { return "org/" + name }
func userKey(org, name string) string      { return "user/" + org + "/" + name }
func apiKeyKey(hash string) string         { return "apikey/" + hash }
func meshKey(org, name string) string      { return "mesh/" + org + "/" + name }
func tokenKey(hash string) string          { return "token/" + hash }
func nodeNameKey(mesh, name string) string { return "nodename/" + mesh + "/" + name }
func ipPrefixKey(mesh string) string       { return "ip/" + mesh + "/" }
func ipKey(mesh string, a netip.Addr) string {
	b := a.As4()
	return ipPrefixKey(mesh) + hex.EncodeToString(b[:])
}
func ipFromKey(mesh, k string) (netip.Addr, bool) {
	b, err := hex.DecodeString(k[len(ipPrefixKey(mesh)):])
	if err != nil || len(b) != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(b)), true
}

// decode reads an entity's data.
func decode[T any](e *store.Entity) (*T, error) {
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		return nil, fmt.Errorf("control: decode %s %s: %w", e.Kind, e.ID, err)
	}
	return &v, nil
}

// entity builds an entity to put.
func entity(kind, id, org, parent string, data any, keys ...string) (*store.Entity, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("control: encode %s %s: %w", kind, id, err)
	}
	return &store.Entity{Kind: kind, ID: id, Org: org, Parent: parent, Keys: keys, Data: b}, nil
}

// Secrets handed out once: API keys and join tokens. Only their SHA-256 is
// stored; 256 random bits need no slow hash.
const (
	prefixAPIKey = "x0t_key_"
	prefixToken  = "x0t_join_"
	shownPrefix  = 6 // characters of the random part kept for recognition
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func newSecret(prefix string) (secret, hash, shown string) {
	var b [32]byte
	rand.Read(b[:])
	secret = prefix + lower(b32.EncodeToString(b[:]))
	return secret, hashSecret(secret), secret[:len(prefix)+shownPrefix]
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
