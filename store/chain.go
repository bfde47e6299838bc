package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
)

// HashSize is the length of event hashes.
const HashSize = sha256.Size

// Genesis is the Prev of an organization's first event. It names the
// organization, so one tenant's chain can not be passed off as another's.
func Genesis(org string) []byte {
	h := sha256.New()
	h.Write([]byte("x0t-audit-genesis-v1\x00"))
	h.Write([]byte(org))
	return h.Sum(nil)
}

// Hash computes an event's hash: SHA-256 over a length-prefixed encoding of
// every field but Seq (a store-wide position, which depends on other
// tenants) and Hash itself.
func Hash(e *Event) []byte {
	h := sha256.New()
	var b [8]byte
	h.Write([]byte("x0t-audit-event-v1\x00"))
	binary.BigEndian.PutUint64(b[:], e.OrgSeq)
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(e.Time.UnixNano()))
	h.Write(b[:])
	for _, s := range []string{e.Org, e.Actor, e.Action, e.Kind, e.ID} {
		binary.BigEndian.PutUint64(b[:], uint64(len(s)))
		h.Write(b[:])
		h.Write([]byte(s))
	}
	for _, r := range [][]byte{e.Before, e.After} {
		if r == nil { // absent differs from empty
			h.Write([]byte{0})
			continue
		}
		h.Write([]byte{1})
		binary.BigEndian.PutUint64(b[:], uint64(len(r)))
		h.Write(b[:])
		h.Write(r)
	}
	h.Write(e.Prev)
	return h.Sum(nil)
}

// Broken describes the first entry of a chain that does not verify.
type Broken struct {
	OrgSeq uint64 `json:"org_seq"`
	Seq    uint64 `json:"seq"`
	Action string `json:"action,omitempty"`
	Kind   string `json:"kind,omitempty"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason"`
}

func (b *Broken) String() string {
	return fmt.Sprintf("entry %d (seq %d, %s %s/%s): %s", b.OrgSeq, b.Seq, b.Action, b.Kind, b.ID, b.Reason)
}

// Report is the result of verifying an organization's chain.
type Report struct {
	Org         string  `json:"org"`
	OK          bool    `json:"ok"`
	Events      uint64  `json:"events"`      // entries checked
	Head        uint64  `json:"head"`        // OrgSeq of the last entry
	Checkpoints int     `json:"checkpoints"` // signed checkpoints that verified
	Broken      *Broken `json:"broken,omitempty"`
}

// ChainVerifier checks a chain entry by entry; implementations feed it the
// organization's events in OrgSeq order and then call Finish. It holds only
// the previous hash, so chains of any length verify in constant memory.
type ChainVerifier struct {
	org    string
	prev   []byte
	next   uint64
	Report Report
}

// NewChainVerifier starts verifying org's chain.
func NewChainVerifier(org string) *ChainVerifier {
	return &ChainVerifier{org: org, prev: Genesis(org), next: 1, Report: Report{Org: org, OK: true}}
}

// Add checks the next event. It returns false once the chain is broken.
func (v *ChainVerifier) Add(e *Event) bool {
	if !v.Report.OK {
		return false
	}
	fail := func(reason string) bool {
		v.Report.OK = false
		v.Report.Broken = &Broken{OrgSeq: e.OrgSeq, Seq: e.Seq, Action: e.Action, Kind: e.Kind, ID: e.ID, Reason: reason}
		return false
	}
	switch {
	case e.Org != v.org:
		return fail("event of another organization in the chain")
	case e.OrgSeq != v.next:
		return fail(fmt.Sprintf("expected entry %d here: entries are missing or reordered", v.next))
	case !bytes.Equal(Hash(e), e.Hash):
		return fail("content does not match its hash: the entry was altered")
	case !bytes.Equal(e.Prev, v.prev):
		return fail(fmt.Sprintf("does not link to entry %d: that entry or this one was altered", v.next-1))
	}
	v.prev = e.Hash
	v.next++
	v.Report.Events++
	v.Report.Head = e.OrgSeq
	return true
}

// FinishHead compares the end of the chain with the recorded head, which
// catches entries cut off the end.
func (v *ChainVerifier) FinishHead(h *Head) {
	if !v.Report.OK || h == nil {
		return
	}
	if h.OrgSeq != v.Report.Head || !bytes.Equal(h.Hash, v.prev) {
		v.Report.OK = false
		v.Report.Broken = &Broken{OrgSeq: h.OrgSeq, Reason: fmt.Sprintf(
			"the chain head records entry %d but the log ends at entry %d: entries were removed or altered", h.OrgSeq, v.Report.Head)}
	}
}

// Checkpoint is a signed statement that an organization's chain had the
// given hash at the given position.
type Checkpoint struct {
	Org       string    `json:"org"`
	OrgSeq    uint64    `json:"org_seq"`
	Hash      []byte    `json:"hash"`
	Time      time.Time `json:"time"`
	KeyID     []byte    `json:"key_id"` // SHA-256 of the signer's public key
	Signature []byte    `json:"signature"`
}

// CheckpointLabel is the hybrid-signature label of checkpoints.
const CheckpointLabel = "x0t-audit-checkpoint-v1"

// Signer signs checkpoints (KeySigner adapts an identity key).
type Signer interface {
	Sign(label string, msg []byte) []byte
	KeyID() []byte
}

// Verifier verifies checkpoint signatures.
type Verifier interface {
	Verify(label string, msg, sig []byte) error
	KeyID() []byte
}

// Message is the signed content of a checkpoint.
func (c *Checkpoint) Message() []byte {
	var b bytes.Buffer
	b.WriteString("x0t-audit-checkpoint-v1\x00")
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(c.Org)))
	b.Write(n[:])
	b.WriteString(c.Org)
	binary.BigEndian.PutUint64(n[:], c.OrgSeq)
	b.Write(n[:])
	b.Write(c.Hash)
	binary.BigEndian.PutUint64(n[:], uint64(c.Time.UnixNano()))
	b.Write(n[:])
	return b.Bytes()
}

// CheckCheckpoint verifies a checkpoint against the event at its position
// (nil if the chain has no such entry).
func CheckCheckpoint(c *Checkpoint, at *Event, v Verifier) *Broken {
	if v != nil && bytes.Equal(c.KeyID, v.KeyID()) {
		if err := v.Verify(CheckpointLabel, c.Message(), c.Signature); err != nil {
			return &Broken{OrgSeq: c.OrgSeq, Reason: fmt.Sprintf("checkpoint of %s at entry %d: bad signature: %v",
				c.Time.UTC().Format(time.RFC3339), c.OrgSeq, err)}
		}
	}
	if at == nil {
		return &Broken{OrgSeq: c.OrgSeq, Reason: fmt.Sprintf("signed checkpoint names entry %d, which is missing", c.OrgSeq)}
	}
	if !bytes.Equal(at.Hash, c.Hash) {
		return &Broken{OrgSeq: at.OrgSeq, Seq: at.Seq, Action: at.Action, Kind: at.Kind, ID: at.ID,
			Reason: "differs from the signed checkpoint of " + c.Time.UTC().Format(time.RFC3339) + ": the chain was rewritten"}
	}
	return nil
}

// KeySigner signs checkpoints with a hybrid identity key.
type KeySigner struct{ Key *identity.SigningKey }

// Sign implements Signer.
func (k KeySigner) Sign(label string, msg []byte) []byte { return k.Key.Sign(label, msg) }

// KeyID implements Signer.
func (k KeySigner) KeyID() []byte { fp := k.Key.Public().Fingerprint(); return fp[:] }

// KeyVerifier verifies checkpoints with a hybrid identity key.
type KeyVerifier struct{ Key *identity.VerifyingKey }

// Verify implements Verifier.
func (k KeyVerifier) Verify(label string, msg, sig []byte) error {
	return k.Key.Verify(label, msg, sig)
}

// KeyID implements Verifier.
func (k KeyVerifier) KeyID() []byte { fp := k.Key.Fingerprint(); return fp[:] }
