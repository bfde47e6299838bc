// Package netmap is what the control plane tells each node about its mesh: the
// node's peers (certificates, endpoints), the access rules the node enforces,
// and revocations. It travels as a stream of deltas, each signed with the mesh
// CA's hybrid key, so a node accepts only what the mesh CA said and applies
// each change atomically. The encoding is JSON (a change to a netmap is rare,
// its size is dominated by certificates, and JSON keeps the API inspectable).
package netmap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/policy"
)

// Label is the hybrid-signature label of netmap deltas.
const Label = "x0t-netmap-v1"

// MaxSignedSize bounds one signed delta (a full netmap of a few thousand peers).
const MaxSignedSize = 64 << 20

// Peer is one peer as the control plane describes it.
type Peer struct {
	ID        string   `json:"id"` // node ID, hex
	Name      string   `json:"name"`
	Cert      []byte   `json:"cert"`                // encoded certificate (base64 in JSON)
	Endpoints []string `json:"endpoints,omitempty"` // UDP ip:port, best first
}

// Netmap is one node's complete view at a version.
type Netmap struct {
	Mesh    string       `json:"mesh"`
	Version uint64       `json:"version"`
	Node    string       `json:"node"` // ID of the node this view is for
	Peers   []Peer       `json:"peers"`
	Rules   policy.Rules `json:"rules"`
	Revoked []string     `json:"revoked,omitempty"` // node IDs, hex
}

// Delta changes a netmap from version From to version To. From == 0 means the
// delta is a full snapshot: Upsert holds every peer and Rules is set.
type Delta struct {
	Mesh    string        `json:"mesh"`
	Node    string        `json:"node"`
	From    uint64        `json:"from"`
	To      uint64        `json:"to"`
	Issued  time.Time     `json:"issued"`
	Upsert  []Peer        `json:"upsert,omitempty"`
	Remove  []string      `json:"remove,omitempty"`  // node IDs
	Rules   *policy.Rules `json:"rules,omitempty"`   // replaces the rules when set
	Revoked []string      `json:"revoked,omitempty"` // node IDs newly revoked
}

// Signed is a delta as it travels: the exact payload bytes and their hybrid
// signature by the mesh CA.
type Signed struct {
	Payload   []byte `json:"payload"`
	Signature []byte `json:"signature"`
}

// Errors from Open and Apply.
var (
	ErrSignature = errors.New("netmap: signature does not verify")
	ErrMalformed = errors.New("netmap: malformed delta")
	ErrVersion   = errors.New("netmap: delta does not follow the current version")
	ErrForeign   = errors.New("netmap: delta for another mesh or node")
)

// Sign encodes and signs a delta with the mesh CA's key.
func Sign(d *Delta, ca *identity.SigningKey) (*Signed, error) {
	if err := d.validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("netmap: encode: %w", err)
	}
	return &Signed{Payload: payload, Signature: ca.Sign(Label, payload)}, nil
}

// Open verifies a signed delta with the mesh CA's verifying key and decodes it.
// Nothing is decoded before the signature verifies.
func Open(s *Signed, ca *identity.VerifyingKey) (*Delta, error) {
	if len(s.Payload) == 0 || len(s.Payload) > MaxSignedSize {
		return nil, fmt.Errorf("%w: payload of %d bytes", ErrMalformed, len(s.Payload))
	}
	if err := ca.Verify(Label, s.Payload, s.Signature); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	var d Delta
	dec := json.NewDecoder(bytes.NewReader(s.Payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	if err := d.validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

func (d *Delta) validate() error {
	if d.Mesh == "" || d.Node == "" {
		return fmt.Errorf("%w: mesh and node are required", ErrMalformed)
	}
	if d.To <= d.From {
		return fmt.Errorf("%w: version %d does not follow %d", ErrMalformed, d.To, d.From)
	}
	if d.From == 0 && d.Rules == nil {
		return fmt.Errorf("%w: a full snapshot must carry rules", ErrMalformed)
	}
	seen := map[string]bool{}
	for _, p := range d.Upsert {
		if p.ID == "" || len(p.Cert) == 0 {
			return fmt.Errorf("%w: peer without id or certificate", ErrMalformed)
		}
		if seen[p.ID] {
			return fmt.Errorf("%w: peer %s listed twice", ErrMalformed, p.ID)
		}
		seen[p.ID] = true
	}
	for _, id := range d.Remove {
		if seen[id] {
			return fmt.Errorf("%w: peer %s both upserted and removed", ErrMalformed, id)
		}
	}
	if d.Rules != nil {
		if err := d.Rules.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	return nil
}

// Apply returns the netmap that results from applying d to m (m may be nil
// before the first snapshot). m is not modified: a node swaps in the result
// only when the whole delta applied.
func Apply(m *Netmap, d *Delta) (*Netmap, error) {
	if d.From == 0 {
		next := &Netmap{Mesh: d.Mesh, Node: d.Node, Version: d.To, Peers: slices.Clone(d.Upsert), Rules: *d.Rules,
			Revoked: slices.Clone(d.Revoked)}
		return next, nil
	}
	if m == nil || d.From != m.Version {
		have := uint64(0)
		if m != nil {
			have = m.Version
		}
		return nil, fmt.Errorf("%w: delta from %d, have %d", ErrVersion, d.From, have)
	}
	if d.Mesh != m.Mesh || d.Node != m.Node {
		return nil, ErrForeign
	}
	next := &Netmap{Mesh: m.Mesh, Node: m.Node, Version: d.To, Rules: m.Rules, Revoked: slices.Clone(m.Revoked)}
	drop := map[string]bool{}
	for _, id := range d.Remove {
		drop[id] = true
	}
	up := map[string]Peer{}
	for _, p := range d.Upsert {
		up[p.ID] = p
	}
	for _, p := range m.Peers {
		if drop[p.ID] {
			continue
		}
		if u, ok := up[p.ID]; ok {
			p = u
			delete(up, p.ID)
		}
		next.Peers = append(next.Peers, p)
	}
	for _, p := range d.Upsert {
		if _, ok := up[p.ID]; ok {
			next.Peers = append(next.Peers, p)
		}
	}
	if d.Rules != nil {
		next.Rules = *d.Rules
	}
	for _, id := range d.Revoked {
		if !slices.Contains(next.Revoked, id) {
			next.Revoked = append(next.Revoked, id)
		}
	}
	return next, nil
}

// Diff returns the delta that turns old (nil for none) into next, for the
// control plane's streamer. Peers are compared by their encoded form.
func Diff(old, next *Netmap) *Delta {
	d := &Delta{Mesh: next.Mesh, Node: next.Node, To: next.Version}
	if old == nil {
		d.Upsert = slices.Clone(next.Peers)
		r := next.Rules
		d.Rules = &r
		d.Revoked = slices.Clone(next.Revoked)
		return d
	}
	d.From = old.Version
	prev := map[string]Peer{}
	for _, p := range old.Peers {
		prev[p.ID] = p
	}
	for _, p := range next.Peers {
		if o, ok := prev[p.ID]; !ok || !peerEqual(o, p) {
			d.Upsert = append(d.Upsert, p)
		}
		delete(prev, p.ID)
	}
	for id := range prev {
		d.Remove = append(d.Remove, id)
	}
	slices.Sort(d.Remove)
	if !old.Rules.Equal(next.Rules) {
		r := next.Rules
		d.Rules = &r
	}
	for _, id := range next.Revoked {
		if !slices.Contains(old.Revoked, id) {
			d.Revoked = append(d.Revoked, id)
		}
	}
	return d
}

func peerEqual(a, b Peer) bool {
	return a.ID == b.ID && a.Name == b.Name && bytes.Equal(a.Cert, b.Cert) && slices.Equal(a.Endpoints, b.Endpoints)
}
