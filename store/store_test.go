package store

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestNewID(t *testing.T) {
	a := NewID("msh")
	time.Sleep(2 * time.Millisecond)
	b := NewID("msh")
	if len(a) != 4+26 || !strings.HasPrefix(a, "msh_") || a >= b {
		t.Fatalf("ids %q %q: want 30 characters, prefixed, increasing", a, b)
	}
	for _, c := range a[4:] {
		if !strings.ContainsRune("0123456789abcdefghjkmnpqrstvwxyz", c) {
			t.Fatalf("id %q has %q", a, c)
		}
	}
}

// TestHashCoversEveryField changes each field of an event in turn: each
// change must change the hash, so no field can be edited unnoticed.
func TestHashCoversEveryField(t *testing.T) {
	base := func() *Event {
		return &Event{Seq: 9, OrgSeq: 3, Time: time.Unix(100, 5), Org: "o", Actor: "a", Action: "x.y", Kind: "k", ID: "i",
			Before: []byte(`{"data":1}`), After: []byte(`{"data":2}`), Prev: Genesis("o")}
	}
	h := Hash(base())
	for name, mod := range map[string]func(*Event){
		"org_seq":     func(e *Event) { e.OrgSeq++ },
		"time":        func(e *Event) { e.Time = e.Time.Add(1) },
		"org":         func(e *Event) { e.Org = "p" },
		"actor":       func(e *Event) { e.Actor = "b" },
		"action":      func(e *Event) { e.Action = "x.z" },
		"kind":        func(e *Event) { e.Kind = "l" },
		"id":          func(e *Event) { e.ID = "j" },
		"before":      func(e *Event) { e.Before = []byte(`{"data":3}`) },
		"no before":   func(e *Event) { e.Before = nil },
		"empty after": func(e *Event) { e.After = []byte{} },
		"prev":        func(e *Event) { e.Prev = Genesis("p") },
		"shift":       func(e *Event) { e.Actor, e.Action = "ax", ".y" }, // length prefixes
	} {
		e := base()
		mod(e)
		if bytes.Equal(Hash(e), h) {
			t.Errorf("changing %s leaves the hash unchanged", name)
		}
	}
	e := base()
	e.Seq = 1000 // the store-wide position is not part of a tenant's chain
	if !bytes.Equal(Hash(e), h) {
		t.Error("the hash depends on Seq")
	}
}

func TestChainVerifier(t *testing.T) {
	var chain []*Event
	prev := Genesis("o")
	for i := range 4 {
		e := &Event{Seq: uint64(10 + i), OrgSeq: uint64(i + 1), Org: "o", Action: "a", Prev: prev}
		e.Hash = Hash(e)
		prev = e.Hash
		chain = append(chain, e)
	}
	v := NewChainVerifier("o")
	for _, e := range chain {
		if !v.Add(e) {
			t.Fatalf("entry %d: %+v", e.OrgSeq, v.Report.Broken)
		}
	}
	v.FinishHead(&Head{Org: "o", OrgSeq: 4, Hash: prev})
	if !v.Report.OK || v.Report.Events != 4 {
		t.Fatalf("report: %+v", v.Report)
	}
	// Another organization's genesis does not verify.
	v = NewChainVerifier("p")
	if v.Add(chain[0]) {
		t.Fatal("o's chain verified as p's")
	}
}

func TestProjectionApply(t *testing.T) {
	p := Projection{}
	rec, _ := EncodeRecord(&Entity{Parent: "m", Keys: []string{"k"}, Data: []byte(`{"a":1}`)})
	t0 := time.Unix(1, 0)
	if err := p.Apply(&Event{Seq: 1, Time: t0, Org: "o", Kind: "node", ID: "n", After: rec}); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(&Event{Seq: 2, Time: t0.Add(time.Second), Org: "o", Kind: "node", ID: "n", After: rec}); err != nil {
		t.Fatal(err)
	}
	e := p[EntityKey{"node", "n"}]
	if e.Parent != "m" || e.Version != 2 || !e.Created.Equal(t0) || !e.Updated.Equal(t0.Add(time.Second)) {
		t.Fatalf("entity: %+v", e)
	}
	if err := p.Apply(&Event{Seq: 3, Kind: "node", ID: "n"}); err != nil || len(p) != 0 {
		t.Fatalf("delete: %v, %d", err, len(p))
	}
	if err := p.Apply(&Event{Seq: 4, Kind: "node", ID: "n"}); err == nil {
		t.Fatal("deleting a missing entity applied")
	}
}
