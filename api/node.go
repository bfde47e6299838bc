// Package api holds the parts of the control-plane API that nodes speak:
// enrollment, status, the netmap stream, heartbeats and certificate renewal,
// and the request signature by which a node proves who it is. The control
// plane and the node agent both build on these types, so the two can not drift.
package api

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
)

// Paths of the node-facing endpoints, under the server's base URL.
const (
	PathEnroll    = "/api/v1/enroll"
	PathNode      = "/api/v1/node"           // GET: status and certificate (node-signed)
	PathNetmap    = "/api/v1/node/netmap"    // GET ?since=VERSION: NDJSON stream of netmap.Signed (node-signed)
	PathHeartbeat = "/api/v1/node/heartbeat" // POST Heartbeat (node-signed)
	PathRenew     = "/api/v1/node/renew"     // POST: a fresh certificate (node-signed)
)

// Node states.
const (
	StatusPending  = "pending"
	StatusApproved = "approved"
	StatusRevoked  = "revoked"
)

// Signature labels.
const (
	LabelEnroll   = "x0t-enroll-v1"
	LabelNodeAuth = "x0t-node-auth-v1"
)

// PublicKeys are a node's public keys as sent at enrollment.
type PublicKeys struct {
	DH      []byte `json:"dh"`      // X25519, 32 bytes
	KEM     []byte `json:"kem"`     // ML-KEM-768 encapsulation key, 1184 bytes
	Signing []byte `json:"signing"` // Ed25519 || ML-DSA-65, 1984 bytes
}

// Identity converts to identity.PublicKeys.
func (k PublicKeys) Identity() identity.PublicKeys {
	return identity.PublicKeys{DH: k.DH, KEM: k.KEM, Signing: k.Signing}
}

// EnrollRequest registers a node with a join token. The node generated its keys
// itself; Proof (a hybrid signature under its signing key over EnrollProof)
// shows it holds the signing key it registers.
type EnrollRequest struct {
	Token     string     `json:"token"`
	Name      string     `json:"name"`
	Keys      PublicKeys `json:"keys"`
	Endpoints []string   `json:"endpoints,omitempty"` // UDP ip:port the node listens on
	Proof     []byte     `json:"proof"`
}

// EnrollProof is the message a node signs (label LabelEnroll) when enrolling.
func EnrollProof(token, name string, k PublicKeys) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(token), []byte(name), k.DH, k.KEM, k.Signing} {
		var n [8]byte
		l := len(part)
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}

// NodeResponse is the answer to enrollment and to a status request.
type NodeResponse struct {
	NodeID string `json:"node_id"`
	Status string `json:"status"` // pending, approved, revoked
	Mesh   string `json:"mesh"`
	CACert []byte `json:"ca_cert"`        // the mesh CA certificate (encoded)
	Cert   []byte `json:"cert,omitempty"` // the node certificate, once approved
}

// Heartbeat is a node's periodic report.
type Heartbeat struct {
	Endpoints []string         `json:"endpoints,omitempty"`
	Health    string           `json:"health,omitempty"` // healthy, degraded, critical
	Reasons   []string         `json:"reasons,omitempty"`
	Uptime    int64            `json:"uptime_seconds"`
	Peers     []PeerTelemetry  `json:"peers,omitempty"`
	Incidents []IncidentReport `json:"incidents,omitempty"`
}

// PeerTelemetry is traffic with one peer since the node started.
type PeerTelemetry struct {
	ID            string    `json:"id"`
	RxBytes       uint64    `json:"rx_bytes"`
	TxBytes       uint64    `json:"tx_bytes"`
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	RTTMillis     float64   `json:"rtt_ms,omitempty"`
	Loss          float64   `json:"loss,omitempty"`
	// Link is the direct link's state as the node's link monitor sees it:
	// "up" or "down", empty when the link is not monitored (no session yet,
	// or no endpoint). A cut link goes down within a few probe intervals.
	Link string `json:"link,omitempty"`
}

// IncidentReport is one self-healing incident (filled by the healing loop).
type IncidentReport struct {
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	Subject  string    `json:"subject"`
	Action   string    `json:"action"`
	Resolved bool      `json:"resolved"`
}

// MaxClockSkew is how far a signed request's time may be from the server's.
const MaxClockSkew = 2 * time.Minute

// HeaderAuth carries a node's request signature:
//
//	Authorization: X0T-Node id=<hex node id>,ts=<unix seconds>,sig=<base64url>
//
// where sig is the node's hybrid signature (label LabelNodeAuth) over
// AuthMessage(method, path with query, ts, SHA-256 of the body).
const authScheme = "X0T-Node"

// AuthMessage is what a node signs for a request.
func AuthMessage(method, pathQuery string, ts int64, body []byte) []byte {
	sum := sha256.Sum256(body)
	return fmt.Appendf(nil, "%s\n%s\n%d\n%x", method, pathQuery, ts, sum)
}

// SignRequest adds the node's signature to req, whose body is body.
func SignRequest(req *http.Request, body []byte, id identity.NodeID, key *identity.SigningKey, now time.Time) {
	ts := now.Unix()
	sig := key.Sign(LabelNodeAuth, AuthMessage(req.Method, req.URL.RequestURI(), ts, body))
	req.Header.Set("Authorization", fmt.Sprintf("%s id=%s,ts=%d,sig=%s", authScheme, id, ts,
		base64.RawURLEncoding.EncodeToString(sig)))
}

// ErrRevoked is what node-side code reports once the control plane has revoked
// the node: the client maps the server's refusal to it, the agent stops on it.
var ErrRevoked = errors.New("node revoked")

// ErrNodeAuth reports a missing or bad node signature.
var ErrNodeAuth = errors.New("api: node authentication failed")

// ParseAuth extracts the node ID, time and signature from a request.
func ParseAuth(r *http.Request) (identity.NodeID, int64, []byte, error) {
	var id identity.NodeID
	h := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(h, authScheme+" ")
	if !ok {
		return id, 0, nil, fmt.Errorf("%w: no %s authorization", ErrNodeAuth, authScheme)
	}
	var idHex, tsStr, sigStr string
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch k {
		case "id":
			idHex = v
		case "ts":
			tsStr = v
		case "sig":
			sigStr = v
		}
	}
	raw, err := hex.DecodeString(idHex)
	if err != nil || len(raw) != identity.NodeIDSize {
		return id, 0, nil, fmt.Errorf("%w: bad node id", ErrNodeAuth)
	}
	copy(id[:], raw)
	ts, err := strconv.ParseInt(tsStr, 10, 64)
	if err != nil {
		return id, 0, nil, fmt.Errorf("%w: bad timestamp", ErrNodeAuth)
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigStr)
	if err != nil || len(sig) != identity.SignatureSize {
		return id, 0, nil, fmt.Errorf("%w: bad signature encoding", ErrNodeAuth)
	}
	return id, ts, sig, nil
}

// VerifyRequest checks a node-signed request whose body is body. key returns the
// registered verifying key of a node (an error if there is none).
func VerifyRequest(r *http.Request, body []byte, key func(identity.NodeID) (*identity.VerifyingKey, error), now time.Time) (identity.NodeID, error) {
	id, ts, sig, err := ParseAuth(r)
	if err != nil {
		return id, err
	}
	if d := now.Sub(time.Unix(ts, 0)); d > MaxClockSkew || d < -MaxClockSkew {
		return id, fmt.Errorf("%w: request time off by %v", ErrNodeAuth, d.Round(time.Second))
	}
	vk, err := key(id)
	if err != nil {
		return id, fmt.Errorf("%w: %w", ErrNodeAuth, err)
	}
	if err := vk.Verify(LabelNodeAuth, AuthMessage(r.Method, r.URL.RequestURI(), ts, body), sig); err != nil {
		return id, fmt.Errorf("%w: %w", ErrNodeAuth, err)
	}
	return id, nil
}
