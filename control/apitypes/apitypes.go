// Package apitypes holds the bodies of the control plane's administrative
// REST API (/api/v1): the server validates and documents them (the struct
// tags feed the OpenAPI document), the Go client and the CLI send and read
// the same types. The node-facing part of the API is in package api.
package apitypes

import (
	"encoding/json"
	"time"
)

// Roles, from most to least powerful.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
	RoleViewer = "viewer"
)

// Patterns shared by the API and its clients.
const (
	// NamePattern is a DNS label: mesh, node, organization and user names
	// and tags (they end up in certificates and SPIFFE IDs).
	NamePattern = `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`
	// IDPattern matches the store's prefixed IDs and hex node IDs.
	IDPattern = `^[a-z0-9_]{1,64}$`
)

// Org is an organization (a tenant).
type Org struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Operator  bool      `json:"operator" doc:"The organization that runs the control plane: it may create and delete other organizations (and sees nothing inside them)."`
	CreatedAt time.Time `json:"created_at"`
}

// CreateOrgRequest creates an organization with its first owner.
type CreateOrgRequest struct {
	Name  string `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" doc:"Organization name, unique on this control plane."`
	Owner string `json:"owner,omitempty" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" doc:"Name of the first owner (default: owner)."`
	Email string `json:"email,omitempty" maxLength:"254" format:"email"`
}

// CreateOrgResponse holds the new organization and its owner's API key,
// which is shown only here.
type CreateOrgResponse struct {
	Org  Org        `json:"org"`
	User User       `json:"user"`
	Key  CreatedKey `json:"key"`
}

// UpdateOrgRequest renames the caller's organization.
type UpdateOrgRequest struct {
	Name string `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"`
}

// Whoami describes the caller.
type Whoami struct {
	Org  Org    `json:"org"`
	User User   `json:"user"`
	Key  APIKey `json:"key"`
	Role string `json:"role" doc:"Effective role: the lower of the key's and its user's."`
}

// User is a member of an organization. Users act through API keys.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email,omitempty"`
	Role      string    `json:"role" enum:"owner,admin,member,viewer"`
	CreatedAt time.Time `json:"created_at"`
}

// CreateUserRequest adds a user.
type CreateUserRequest struct {
	Name  string `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"`
	Email string `json:"email,omitempty" maxLength:"254" format:"email"`
	Role  string `json:"role" enum:"owner,admin,member,viewer"`
}

// UpdateUserRequest changes a user's role or email.
type UpdateUserRequest struct {
	Email *string `json:"email,omitempty" maxLength:"254"`
	Role  *string `json:"role,omitempty" enum:"owner,admin,member,viewer"`
}

// APIKey is an API key without its secret (only a hash is stored).
type APIKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role" enum:"owner,admin,member,viewer"`
	UserID    string     `json:"user_id"`
	Prefix    string     `json:"prefix" doc:"The first characters of the key, to recognise it."`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// CreateKeyRequest creates an API key for a user of the caller's
// organization (default: the caller's user) with at most the caller's role.
type CreateKeyRequest struct {
	Name   string `json:"name" minLength:"1" maxLength:"64" pattern:"^[A-Za-z0-9 ._-]+$"`
	Role   string `json:"role" enum:"owner,admin,member,viewer"`
	UserID string `json:"user_id,omitempty" pattern:"^[a-z0-9_]{1,64}$"`
	TTL    string `json:"ttl,omitempty" maxLength:"32" doc:"Lifetime as a Go duration (\"720h\"); none means no expiry."`
}

// CreatedKey is a new API key with its secret, shown once.
type CreatedKey struct {
	APIKey
	Key string `json:"key" doc:"The secret: send it as 'Authorization: Bearer KEY'. It is not shown again."`
}

// Mesh is a private network with its own certificate authority.
type Mesh struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Description   string    `json:"description,omitempty"`
	IPv4Prefix    string    `json:"ipv4_prefix" doc:"Overlay IPv4 prefix nodes get addresses from."`
	IPv6Prefix    string    `json:"ipv6_prefix" doc:"Overlay IPv6 unique local /48, derived from the mesh CA."`
	PQProfile     string    `json:"pq_profile"`
	Transports    []string  `json:"transports"`
	CertValidity  string    `json:"cert_validity" doc:"Lifetime of node certificates (Go duration)."`
	TrustDomain   string    `json:"trust_domain"`
	CACert        []byte    `json:"ca_cert" doc:"The mesh CA certificate (x0t binary encoding, base64)."`
	CAFingerprint string    `json:"ca_fingerprint" doc:"SHA-256 of the CA's hybrid verifying key, hex."`
	Nodes         int       `json:"nodes"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// PQ profiles and transports.
const (
	PQHybrid768 = "hybrid-768" // X25519 + ML-KEM-768 key exchange, Ed25519 + ML-DSA-65 signatures
)

// CreateMeshRequest creates a mesh.
type CreateMeshRequest struct {
	Name         string   `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" doc:"Unique in the organization; part of every node's SPIFFE ID."`
	Description  string   `json:"description,omitempty" maxLength:"256"`
	IPv4Prefix   string   `json:"ipv4_prefix,omitempty" maxLength:"18" doc:"Default 100.64.0.0/10; prefix length 8 to 30."`
	PQProfile    string   `json:"pq_profile,omitempty" enum:"hybrid-768" doc:"Default hybrid-768: X25519+ML-KEM-768 and Ed25519+ML-DSA-65."`
	Transports   []string `json:"transports,omitempty" maxItems:"3" uniqueItems:"true" enum:"udp,tcp-tls,websocket" doc:"Default [udp]."`
	CertValidity string   `json:"cert_validity,omitempty" maxLength:"32" doc:"Default 720h; 10m to 8760h."`
	TrustDomain  string   `json:"trust_domain,omitempty" maxLength:"63" pattern:"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$" doc:"SPIFFE trust domain (default x0t.mesh)."`
}

// UpdateMeshRequest changes a mesh. The name and prefixes are fixed: the
// CA certificate and every node certificate carry them.
type UpdateMeshRequest struct {
	Description  *string   `json:"description,omitempty" maxLength:"256"`
	PQProfile    *string   `json:"pq_profile,omitempty" enum:"hybrid-768"`
	Transports   *[]string `json:"transports,omitempty" minItems:"1" maxItems:"3" uniqueItems:"true" enum:"udp,tcp-tls,websocket"`
	CertValidity *string   `json:"cert_validity,omitempty" maxLength:"32"`
}

// Token is a join token without its secret (only a hash is stored).
type Token struct {
	ID          string     `json:"id"`
	Mesh        string     `json:"mesh"`
	Description string     `json:"description,omitempty"`
	Tags        []string   `json:"tags"`
	AutoApprove bool       `json:"auto_approve"`
	MaxUses     int        `json:"max_uses" doc:"0 means unlimited."`
	Uses        int        `json:"uses"`
	Prefix      string     `json:"prefix"`
	ExpiresAt   time.Time  `json:"expires_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Valid       bool       `json:"valid" doc:"Not expired, revoked or used up."`
	CreatedBy   string     `json:"created_by"`
	CreatedAt   time.Time  `json:"created_at"`
}

// CreateTokenRequest creates a join token.
type CreateTokenRequest struct {
	Description string   `json:"description,omitempty" maxLength:"256"`
	Tags        []string `json:"tags,omitempty" maxItems:"32" uniqueItems:"true" doc:"Tags every node enrolled with the token gets (admins only)."`
	AutoApprove bool     `json:"auto_approve,omitempty" doc:"Approve nodes at once (admins only)."`
	TTL         string   `json:"ttl,omitempty" maxLength:"32" doc:"Lifetime (Go duration), default 24h, at most 8760h."`
	MaxUses     *int     `json:"max_uses,omitempty" minimum:"0" maximum:"1000000" doc:"Default 1; 0 means unlimited."`
}

// CreatedToken is a new join token with its secret, shown once.
type CreatedToken struct {
	Token
	Secret string `json:"token" doc:"The join token for 'x0t node up --token'. It is not shown again."`
}

// Node is a node of a mesh.
type Node struct {
	ID           string     `json:"id" doc:"Node ID: hex of the first 16 bytes of SHA-256 over its public keys."`
	Name         string     `json:"name"`
	Mesh         string     `json:"mesh"`
	Status       string     `json:"status" enum:"pending,approved,revoked"`
	Tags         []string   `json:"tags"`
	IPv4         string     `json:"ipv4"`
	IPv6         string     `json:"ipv6,omitempty"`
	Endpoints    []string   `json:"endpoints"`
	TokenID      string     `json:"token_id,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	ApprovedAt   *time.Time `json:"approved_at,omitempty"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
	Online       bool       `json:"online" doc:"Holds a netmap stream now."`
	LastSeen     *time.Time `json:"last_seen,omitempty" doc:"Time of the last heartbeat."`
	Health       string     `json:"health,omitempty"`
	RxBytes      uint64     `json:"rx_bytes" doc:"Bytes received from all peers, as last reported."`
	TxBytes      uint64     `json:"tx_bytes" doc:"Bytes sent to all peers, as last reported."`
}

// UpdateNodeRequest renames a node or replaces its tags; either reissues
// its certificate.
type UpdateNodeRequest struct {
	Name *string   `json:"name,omitempty" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"`
	Tags *[]string `json:"tags,omitempty" maxItems:"32" uniqueItems:"true"`
}

// NodeTelemetry is a node's last heartbeat.
type NodeTelemetry struct {
	Node     string          `json:"node"`
	Time     time.Time       `json:"time"`
	Report   json.RawMessage `json:"report" doc:"The heartbeat as the node sent it."`
	Online   bool            `json:"online"`
	Interval string          `json:"interval,omitempty"`
}

// ACLTestRequest runs a policy's embedded tests (the mesh's current policy,
// or Policy if given), or checks one packet when Src and Dst are set.
type ACLTestRequest struct {
	Policy json.RawMessage `json:"policy,omitempty" doc:"A policy to test instead of the mesh's current one."`
	Src    string          `json:"src,omitempty" maxLength:"128" doc:"Node name, ID or overlay address."`
	Dst    string          `json:"dst,omitempty" maxLength:"128" doc:"Node name, ID or overlay address."`
	Proto  string          `json:"proto,omitempty" maxLength:"8" doc:"tcp, udp, icmp, sctp or a protocol number (default tcp)."`
	Port   uint16          `json:"port,omitempty"`
}

// ACLTestResult is one test's outcome.
type ACLTestResult struct {
	Src   string `json:"src"`
	Dst   string `json:"dst"`
	Proto string `json:"proto,omitempty"`
	Port  uint16 `json:"port,omitempty"`
	Want  string `json:"want,omitempty"`
	Got   string `json:"got"`
	Pass  bool   `json:"pass"`
	Error string `json:"error,omitempty"`
}

// ACLTestResponse holds the results; Pass is true when every test passed.
type ACLTestResponse struct {
	Pass    bool            `json:"pass"`
	Results []ACLTestResult `json:"results"`
}

// ACLValidateResponse says whether a policy would be accepted.
type ACLValidateResponse struct {
	Valid   bool            `json:"valid"`
	Error   string          `json:"error,omitempty"`
	Results []ACLTestResult `json:"results"`
}

// AuditEvent is one entry of an organization's audit log. Secrets (key and
// token hashes, encrypted CA keys) are redacted from Before and After; the
// hash covers the stored entry.
type AuditEvent struct {
	Seq    uint64          `json:"seq" doc:"Position in the organization's chain, from 1."`
	Time   time.Time       `json:"time"`
	Actor  string          `json:"actor"`
	Action string          `json:"action"`
	Kind   string          `json:"kind"`
	Target string          `json:"target"`
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
	Prev   string          `json:"prev_hash"`
	Hash   string          `json:"hash"`
}

// AuditPage is a page of the audit log, newest first.
type AuditPage struct {
	Events []AuditEvent `json:"events"`
	Next   uint64       `json:"next,omitempty" doc:"Pass as 'before' for the next page; absent on the last."`
}

// AuditVerify is the result of verifying the caller's organization's chain.
type AuditVerify struct {
	OK          bool        `json:"ok"`
	Events      uint64      `json:"events"`
	Head        uint64      `json:"head"`
	Checkpoints int         `json:"checkpoints" doc:"Signed checkpoints that verified."`
	Broken      *AuditBreak `json:"broken,omitempty"`
}

// AuditBreak is the first entry that does not verify.
type AuditBreak struct {
	Seq    uint64 `json:"seq"`
	Action string `json:"action,omitempty"`
	Target string `json:"target,omitempty"`
	Reason string `json:"reason"`
}

// Checkpoint is a signed statement of the chain's hash at a position.
// Keep copies outside the control plane: they prove a later rewrite.
type Checkpoint struct {
	Seq       uint64    `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id"`
	Signature string    `json:"signature" doc:"Hybrid Ed25519+ML-DSA-65 signature, base64, label x0t-audit-checkpoint-v1."`
}

// CheckpointKey is the control plane's checkpoint verifying key.
type CheckpointKey struct {
	KeyID     string `json:"key_id"`
	PublicKey []byte `json:"public_key" doc:"Ed25519 || ML-DSA-65 verifying key."`
}

// Lists. Next, when set, is the cursor for the following page (?after=).
type (
	OrgList struct {
		Items []Org  `json:"items"`
		Next  string `json:"next,omitempty"`
	}
	UserList struct {
		Items []User `json:"items"`
		Next  string `json:"next,omitempty"`
	}
	KeyList struct {
		Items []APIKey `json:"items"`
		Next  string   `json:"next,omitempty"`
	}
	MeshList struct {
		Items []Mesh `json:"items"`
		Next  string `json:"next,omitempty"`
	}
	TokenList struct {
		Items []Token `json:"items"`
		Next  string  `json:"next,omitempty"`
	}
	NodeList struct {
		Items []Node `json:"items"`
		Next  string `json:"next,omitempty"`
	}
	CheckpointList struct {
		Items []Checkpoint `json:"items"`
	}
)
