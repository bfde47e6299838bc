// Package store is the control plane's storage: an append-only, hash-chained
// event log and the current state as a projection of it (event sourcing).
//
// Every mutation goes through Update, which records one Event per changed
// entity (who, what, when, the state before and after) and applies it to the
// projection in the same transaction. The log is chained per organization:
// each event's hash covers the previous event of the same organization, so a
// tenant verifies its own chain without reading anybody else's. Signed
// checkpoints (Checkpoint) pin a chain position with the control plane's
// hybrid key, so even a rewrite of the whole chain is detected.
//
// The projection is generic: an Entity is a kind, an ID, an organization, an
// optional parent (a mesh, for nodes and tokens), unique lookup keys, and JSON
// data that the control package owns. Implementations (sqlstore with a SQLite
// or PostgreSQL dialect) only store and index; all rules live above.
package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Errors. Implementations wrap them with context; test with errors.Is.
var (
	ErrNotFound = errors.New("store: not found")
	// ErrConflict means a unique key is already taken by another entity.
	ErrConflict = errors.New("store: unique key already taken")
	ErrClosed   = errors.New("store: closed")
)

// Entity is one object of the current state.
type Entity struct {
	Kind    string          // "org", "mesh", "node", ...
	ID      string          // unique within Kind
	Org     string          // owning organization ID (an org's own ID for kind "org")
	Parent  string          // e.g. the mesh ID of a node; "" if none
	Keys    []string        // unique lookup keys across the store (names, secret hashes)
	Data    json.RawMessage // the object, owned by the caller
	Version uint64          // Seq of the event that last changed it
	Created time.Time
	Updated time.Time
}

// Record is what an event says about an entity's state: everything but the
// identity (Kind, ID, Org), which the event carries itself.
type Record struct {
	Parent string          `json:"parent,omitempty"`
	Keys   []string        `json:"keys,omitempty"`
	Data   json.RawMessage `json:"data"`
}

// Event is one entry of the audit log.
type Event struct {
	Seq    uint64 // position in the whole store; gives netmap versions their order
	OrgSeq uint64 // position in the organization's chain, from 1
	Time   time.Time
	Org    string
	Actor  string // "key:<id>", "node:<id>", "system", ...
	Action string // "mesh.create", "node.approve", ...
	Kind   string
	ID     string
	Before []byte // encoded Record before the change; nil when created
	After  []byte // encoded Record after the change; nil when deleted
	Prev   []byte // hash of the previous event of Org (the genesis hash for the first)
	Hash   []byte // Hash(event)
	// Parent is the entity's parent, set on the events Update returns and
	// passes to subscribers (for routing; the records carry it too).
	Parent string
}

// Query selects entities. Results are ordered by ID.
type Query struct {
	Kind   string // required
	Org    string // "" for any
	Parent string // "" for any
	After  string // only IDs greater than this (paging cursor)
	Limit  int    // 0 for no limit
}

// EventQuery selects events of one organization by chain position.
type EventQuery struct {
	Org    string // required
	After  uint64 // OrgSeq greater than this
	Before uint64 // OrgSeq less than this (0: no bound)
	Kind   string // optional filter
	ID     string // optional filter (with Kind)
	Limit  int    // 0 for no limit
	Desc   bool   // newest first
}

// Reader reads the current state.
type Reader interface {
	Get(ctx context.Context, kind, id string) (*Entity, error)
	GetByKey(ctx context.Context, key string) (*Entity, error)
	List(ctx context.Context, q Query) ([]*Entity, error)
	// Count counts what List would return, ignoring After and Limit.
	Count(ctx context.Context, q Query) (int, error)
	// MaxKey returns the greatest key starting with prefix, or "" if none.
	MaxKey(ctx context.Context, prefix string) (string, error)
}

// Tx is a read-write transaction. Reads see the transaction's own writes.
type Tx interface {
	Reader
	// Put creates or replaces an entity (Kind, ID, Org, Parent, Keys, Data)
	// and records the change as action. A Put that changes nothing records
	// nothing. It fails with ErrConflict if one of its keys belongs to another
	// entity.
	Put(ctx context.Context, action string, e *Entity) error
	// Delete removes an entity and records action; ErrNotFound if absent.
	Delete(ctx context.Context, action, kind, id string) error
}

// Telemetry is a node's last report. It is kept beside the event log, not in
// it: it arrives every few seconds from every node, is an observation rather
// than a change anybody made, and would drown the audit log.
type Telemetry struct {
	Node string // node ID
	Org  string
	Mesh string
	Time time.Time
	Data json.RawMessage
}

// Head is the latest position of an organization's chain.
type Head struct {
	Org    string
	OrgSeq uint64
	Hash   []byte
}

// Store is the control plane's storage.
type Store interface {
	Reader
	// Update runs fn in a transaction as actor and commits the events it
	// recorded, or nothing if fn fails. It returns the committed events.
	Update(ctx context.Context, actor string, fn func(Tx) error) ([]Event, error)
	// Events lists an organization's events.
	Events(ctx context.Context, q EventQuery) ([]Event, error)
	// LastSeq is the Seq of the newest event in the store.
	LastSeq(ctx context.Context) (uint64, error)
	// Heads returns the chain head of every organization that has events.
	Heads(ctx context.Context) ([]Head, error)
	// Verify checks an organization's chain and its checkpoints.
	Verify(ctx context.Context, org string, v Verifier) (*Report, error)
	// Checkpoint signs the current head of org's chain and keeps the result.
	// It returns nil, nil when the chain is empty.
	Checkpoint(ctx context.Context, org string, s Signer) (*Checkpoint, error)
	// Checkpoints lists org's checkpoints, newest first.
	Checkpoints(ctx context.Context, org string, limit int) ([]Checkpoint, error)
	// PutTelemetry replaces the telemetry of the given nodes in one
	// transaction; Telemetry reads one node's.
	PutTelemetry(ctx context.Context, ts []Telemetry) error
	Telemetry(ctx context.Context, node string) (*Telemetry, error)
	DeleteTelemetry(ctx context.Context, node string) error
	// Subscribe registers fn to be called with the events of every commit,
	// in commit order. fn runs on the committing goroutine: it must not
	// block (the control plane only marks meshes dirty).
	Subscribe(fn func([]Event))
	Close() error
}

// NewID returns a new identifier with a readable prefix ("msh", "tok", ...):
// 26 characters of lowercase Crockford base32 over 48 bits of milliseconds
// and 80 random bits, so IDs sort by creation time.
func NewID(prefix string) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	rand.Read(b[6:])
	const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	var sb strings.Builder
	sb.WriteString(prefix)
	sb.WriteByte('_')
	// 128 bits in 26 groups of 5 (the first group has 3 bits).
	var acc uint64
	bits := 2 // pad to 130 bits
	for _, c := range b {
		acc = acc<<8 | uint64(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			sb.WriteByte(alphabet[(acc>>bits)&31])
		}
	}
	return sb.String()
}
