// Package storetest is the conformance suite every store.Store
// implementation runs (SQLite now, PostgreSQL later), so that they behave
// alike: projection, unique keys, the per-organization hash chain, tamper
// detection, checkpoints and telemetry.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/store"
)

// Harness opens a fresh, empty store for one test. Exec runs raw SQL on the
// same database (with '?' placeholders as the implementation's dialect
// expects), so tamper tests can edit rows behind the store's back.
type Harness struct {
	Open func(t *testing.T) store.Store
	Exec func(t *testing.T, s store.Store, query string, args ...any)
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"PutGetList", testPutGetList},
		{"UniqueKeys", testUniqueKeys},
		{"NoopPut", testNoopPut},
		{"Rollback", testRollback},
		{"ChainPerOrg", testChainPerOrg},
		{"RebuildProjection", testRebuildProjection},
		{"TamperEdit", testTamperEdit},
		{"TamperDelete", testTamperDelete},
		{"TamperTruncate", testTamperTruncate},
		{"TamperRewrite", testTamperRewrite},
		{"Checkpoint", testCheckpoint},
		{"Subscribe", testSubscribe},
		{"ConcurrentUpdates", testConcurrent},
		{"Telemetry", testTelemetry},
		{"EventPaging", testEventPaging},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func put(t *testing.T, s store.Store, actor string, es ...*store.Entity) []store.Event {
	t.Helper()
	evs, err := s.Update(context.Background(), actor, func(tx store.Tx) error {
		for _, e := range es {
			if err := tx.Put(context.Background(), "test.put", e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	return evs
}

func ent(kind, id, org string, data any, keys ...string) *store.Entity {
	b, _ := json.Marshal(data)
	return &store.Entity{Kind: kind, ID: id, Org: org, Keys: keys, Data: b}
}

func testPutGetList(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Open(t)
	put(t, s, "a", ent("mesh", "m1", "o1", map[string]string{"name": "one"}, "mesh/o1/one"),
		&store.Entity{Kind: "node", ID: "n1", Org: "o1", Parent: "m1", Data: json.RawMessage(`{"x":1}`), Keys: []string{"ip/m1/00000002"}},
		&store.Entity{Kind: "node", ID: "n2", Org: "o1", Parent: "m1", Data: json.RawMessage(`{"x":2}`), Keys: []string{"ip/m1/00000003"}},
		&store.Entity{Kind: "node", ID: "n3", Org: "o2", Parent: "m9", Data: json.RawMessage(`{"x":3}`)})
	e, err := s.Get(ctx, "mesh", "m1")
	if err != nil || e.Org != "o1" || string(e.Data) != `{"name":"one"}` || e.Version == 0 || e.Created.IsZero() {
		t.Fatalf("get: %+v, %v", e, err)
	}
	if _, err := s.Get(ctx, "mesh", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	if e, err := s.GetByKey(ctx, "mesh/o1/one"); err != nil || e.ID != "m1" {
		t.Fatalf("get by key: %+v, %v", e, err)
	}
	if _, err := s.GetByKey(ctx, "mesh/o2/one"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get by missing key: %v", err)
	}
	list, err := s.List(ctx, store.Query{Kind: "node", Org: "o1", Parent: "m1"})
	if err != nil || len(list) != 2 || list[0].ID != "n1" || list[1].ID != "n2" {
		t.Fatalf("list: %v, %v", list, err)
	}
	if n, err := s.Count(ctx, store.Query{Kind: "node", Org: "o1", After: "n1", Limit: 1}); err != nil || n != 2 {
		t.Fatalf("count: %d, %v", n, err)
	}
	page, err := s.List(ctx, store.Query{Kind: "node", After: "n1", Limit: 1})
	if err != nil || len(page) != 1 || page[0].ID != "n2" {
		t.Fatalf("list page: %v, %v", page, err)
	}
	if k, err := s.MaxKey(ctx, "ip/m1/"); err != nil || k != "ip/m1/00000003" {
		t.Fatalf("max key: %q, %v", k, err)
	}
	if k, err := s.MaxKey(ctx, "ip/m2/"); err != nil || k != "" {
		t.Fatalf("max key of nothing: %q, %v", k, err)
	}
	// Replace and delete.
	put(t, s, "a", &store.Entity{Kind: "node", ID: "n1", Org: "o1", Parent: "m1", Data: json.RawMessage(`{"x":10}`)})
	if k, _ := s.MaxKey(ctx, "ip/m1/"); k != "ip/m1/00000003" {
		t.Fatalf("max key after dropping a key: %q", k)
	}
	if _, err := s.GetByKey(ctx, "ip/m1/00000002"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("dropped key still found: %v", err)
	}
	evs, err := s.Update(ctx, "a", func(tx store.Tx) error { return tx.Delete(ctx, "test.delete", "node", "n2") })
	if err != nil || len(evs) != 1 || evs[0].After != nil || evs[0].Before == nil {
		t.Fatalf("delete: %v, %v", evs, err)
	}
	if _, err := s.GetByKey(ctx, "ip/m1/00000003"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("key of deleted entity still found: %v", err)
	}
	if _, err := s.Update(ctx, "a", func(tx store.Tx) error { return tx.Delete(ctx, "x", "node", "n2") }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
}

func testUniqueKeys(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Open(t)
	put(t, s, "a", ent("mesh", "m1", "o1", 1, "mesh/o1/prod"))
	_, err := s.Update(ctx, "a", func(tx store.Tx) error {
		if err := tx.Put(ctx, "mesh.create", ent("mesh", "m0", "o1", 1)); err != nil {
			return err
		}
		return tx.Put(ctx, "mesh.create", ent("mesh", "m2", "o1", 2, "mesh/o1/prod"))
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate key: %v", err)
	}
	if _, err := s.Get(ctx, "mesh", "m0"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed transaction left a write behind: %v", err)
	}
	// The same key in another org is another key.
	put(t, s, "a", ent("mesh", "m3", "o2", 3, "mesh/o2/prod"))
	// An entity can not move to another org.
	if _, err := s.Update(ctx, "a", func(tx store.Tx) error { return tx.Put(ctx, "x", ent("mesh", "m1", "o2", 1)) }); err == nil {
		t.Fatal("an entity moved to another organization")
	}
}

func testNoopPut(t *testing.T, h Harness) {
	s := h.Open(t)
	put(t, s, "a", ent("k", "1", "o", map[string]int{"a": 1}, "k/1"))
	if evs := put(t, s, "a", ent("k", "1", "o", map[string]int{"a": 1}, "k/1")); len(evs) != 0 {
		t.Fatalf("a put that changes nothing recorded %d events", len(evs))
	}
	if evs := put(t, s, "a", ent("k", "1", "o", map[string]int{"a": 2}, "k/1")); len(evs) != 1 {
		t.Fatalf("a change recorded %d events", len(evs))
	}
}

func testRollback(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Open(t)
	boom := errors.New("boom")
	_, err := s.Update(ctx, "a", func(tx store.Tx) error {
		if err := tx.Put(ctx, "x", ent("k", "1", "o", 1)); err != nil {
			return err
		}
		if _, err := tx.Get(ctx, "k", "1"); err != nil { // reads see own writes
			return fmt.Errorf("read own write: %w", err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update: %v", err)
	}
	if seq, _ := s.LastSeq(ctx); seq != 0 {
		t.Fatalf("rolled back update left event %d", seq)
	}
	if _, err := s.Get(ctx, "k", "1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rolled back entity exists: %v", err)
	}
	rep, err := s.Verify(ctx, "o", nil)
	if err != nil || !rep.OK || rep.Events != 0 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

func testChainPerOrg(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Open(t)
	for i := range 5 {
		put(t, s, "alice", ent("k", fmt.Sprint("a", i), "orgA", i))
		put(t, s, "bob", ent("k", fmt.Sprint("b", i), "orgB", i))
	}
	for _, org := range []string{"orgA", "orgB"} {
		evs, err := s.Events(ctx, store.EventQuery{Org: org})
		if err != nil || len(evs) != 5 {
			t.Fatalf("%s events: %d, %v", org, len(evs), err)
		}
		prev := store.Genesis(org)
		for i, e := range evs {
			if e.OrgSeq != uint64(i+1) || e.Org != org || !bytes.Equal(e.Prev, prev) || !bytes.Equal(e.Hash, store.Hash(&e)) {
				t.Fatalf("%s event %d: %+v", org, i, e)
			}
			prev = e.Hash
		}
		rep, err := s.Verify(ctx, org, nil)
		if err != nil || !rep.OK || rep.Events != 5 || rep.Head != 5 {
			t.Fatalf("verify %s: %+v, %v", org, rep, err)
		}
	}
	if seq, _ := s.LastSeq(ctx); seq != 10 {
		t.Fatalf("last seq %d, want 10", seq)
	}
	heads, err := s.Heads(ctx)
	if err != nil || len(heads) != 2 || heads[0].OrgSeq != 5 {
		t.Fatalf("heads: %+v, %v", heads, err)
	}
}

// testRebuildProjection makes random mutations, then rebuilds the state from
// the events alone and compares it with the stored projection.
func testRebuildProjection(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Open(t)
	rng := rand.New(rand.NewPCG(1, 2))
	kinds := []string{"mesh", "node", "token"}
	orgs := []string{"o1", "o2", "o3"}
	for range 60 {
		_, err := s.Update(ctx, "fuzz", func(tx store.Tx) error {
			for range 1 + rng.IntN(4) {
				kind := kinds[rng.IntN(len(kinds))]
				id := fmt.Sprint(rng.IntN(8))
				org := orgs[id[0]%3]
				if rng.IntN(4) == 0 {
					err := tx.Delete(ctx, kind+".delete", kind, id)
					if err != nil && !errors.Is(err, store.ErrNotFound) {
						return err
					}
					continue
				}
				e := &store.Entity{Kind: kind, ID: id, Org: org, Parent: fmt.Sprint("p", rng.IntN(2)),
					Data: json.RawMessage(fmt.Sprintf(`{"v":%d,"s":"<&>"}`, rng.IntN(3)))}
				if rng.IntN(2) == 0 {
					e.Keys = []string{fmt.Sprintf("%s/%s/%d", kind, id, rng.IntN(3))}
				}
				if err := tx.Put(ctx, kind+".put", e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Rebuild from every organization's events, merged in Seq order.
	var all []store.Event
	for _, org := range orgs {
		evs, err := s.Events(ctx, store.EventQuery{Org: org})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, evs...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Seq < all[j].Seq })
	p := store.Projection{}
	for i := range all {
		if err := p.Apply(&all[i]); err != nil {
			t.Fatal(err)
		}
	}
	stored := map[store.EntityKey]*store.Entity{}
	for _, kind := range kinds {
		list, err := s.List(ctx, store.Query{Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range list {
			stored[store.EntityKey{Kind: e.Kind, ID: e.ID}] = e
		}
	}
	if len(stored) != len(p) {
		t.Fatalf("stored projection has %d entities, rebuilt %d", len(stored), len(p))
	}
	for k, want := range p {
		got := stored[k]
		if got == nil {
			t.Fatalf("%v missing from the stored projection", k)
		}
		if got.Org != want.Org || got.Parent != want.Parent || !slices.Equal(got.Keys, want.Keys) ||
			!bytes.Equal(got.Data, want.Data) || got.Version != want.Version ||
			!got.Created.Equal(want.Created) || !got.Updated.Equal(want.Updated) {
			t.Fatalf("%v: stored %+v, rebuilt %+v", k, got, want)
		}
		for _, key := range want.Keys {
			if e, err := s.GetByKey(ctx, key); err != nil || e.ID != want.ID {
				t.Fatalf("key %s: %v, %v", key, e, err)
			}
		}
	}
}

func chain(t *testing.T, h Harness, n int) store.Store {
	s := h.Open(t)
	for i := range n {
		put(t, s, "alice", ent("k", fmt.Sprint(i), "org", map[string]int{"i": i}))
		put(t, s, "eve", ent("k", fmt.Sprint("other-", i), "other", i)) // interleaved tenant
	}
	return s
}

func wantBroken(t *testing.T, s store.Store, v store.Verifier, orgSeq uint64, reason string) {
	t.Helper()
	rep, err := s.Verify(context.Background(), "org", v)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Broken == nil || rep.Broken.OrgSeq != orgSeq || !strings.Contains(rep.Broken.Reason, reason) {
		t.Fatalf("verify: %+v (broken %+v), want entry %d broken: %q", rep, rep.Broken, orgSeq, reason)
	}
	// The other tenant's chain is untouched and still verifies.
	if rep, err := s.Verify(context.Background(), "other", v); err != nil || !rep.OK {
		t.Fatalf("other tenant: %+v, %v", rep, err)
	}
}

func testTamperEdit(t *testing.T, h Harness) {
	s := chain(t, h, 6)
	h.Exec(t, s, `UPDATE events SET actor = 'mallory' WHERE org = 'org' AND org_seq = 4`)
	wantBroken(t, s, nil, 4, "altered")
}

func testTamperDelete(t *testing.T, h Harness) {
	s := chain(t, h, 6)
	h.Exec(t, s, `DELETE FROM events WHERE org = 'org' AND org_seq = 3`)
	wantBroken(t, s, nil, 4, "missing")
}

func testTamperTruncate(t *testing.T, h Harness) {
	s := chain(t, h, 6)
	h.Exec(t, s, `DELETE FROM events WHERE org = 'org' AND org_seq = 6`)
	wantBroken(t, s, nil, 6, "removed")
}

// testTamperRewrite recomputes the whole chain after an edit, as an attacker
// with database access but without the checkpoint key would; only the
// signed checkpoint catches it.
func testTamperRewrite(t *testing.T, h Harness) {
	ctx := context.Background()
	s := chain(t, h, 6)
	key, _ := identity.GenerateSigningKey()
	signer, verifier := store.KeySigner{Key: key}, store.KeyVerifier{Key: key.Public()}
	if _, err := s.Checkpoint(ctx, "org", signer); err != nil {
		t.Fatal(err)
	}
	evs, _ := s.Events(ctx, store.EventQuery{Org: "org"})
	prev := store.Genesis("org")
	for i := range evs {
		e := &evs[i]
		if e.OrgSeq == 2 {
			e.Actor = "mallory"
		}
		e.Prev = prev
		e.Hash = store.Hash(e)
		prev = e.Hash
		h.Exec(t, s, `UPDATE events SET actor = ?, prev_hash = ?, hash = ? WHERE org = 'org' AND org_seq = ?`,
			e.Actor, fmt.Sprintf("%x", e.Prev), fmt.Sprintf("%x", e.Hash), int64(e.OrgSeq))
	}
	h.Exec(t, s, `UPDATE chain_heads SET hash = ? WHERE org = 'org'`, fmt.Sprintf("%x", prev))
	wantBroken(t, s, verifier, 6, "checkpoint")
}

func testCheckpoint(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Open(t)
	key, _ := identity.GenerateSigningKey()
	signer, verifier := store.KeySigner{Key: key}, store.KeyVerifier{Key: key.Public()}
	if c, err := s.Checkpoint(ctx, "org", signer); err != nil || c != nil {
		t.Fatalf("checkpoint of an empty chain: %v, %v", c, err)
	}
	put(t, s, "a", ent("k", "1", "org", 1))
	c1, err := s.Checkpoint(ctx, "org", signer)
	if err != nil || c1.OrgSeq != 1 {
		t.Fatalf("checkpoint: %+v, %v", c1, err)
	}
	put(t, s, "a", ent("k", "2", "org", 2))
	if _, err := s.Checkpoint(ctx, "org", signer); err != nil {
		t.Fatal(err)
	}
	cps, err := s.Checkpoints(ctx, "org", 0)
	if err != nil || len(cps) != 2 || cps[0].OrgSeq != 2 {
		t.Fatalf("checkpoints: %+v, %v", cps, err)
	}
	if err := verifier.Verify(store.CheckpointLabel, cps[1].Message(), cps[1].Signature); err != nil {
		t.Fatalf("stored checkpoint does not verify: %v", err)
	}
	rep, err := s.Verify(ctx, "org", verifier)
	if err != nil || !rep.OK || rep.Checkpoints != 2 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	// A forged signature is caught.
	h.Exec(t, s, `UPDATE checkpoints SET signature = ? WHERE org = 'org' AND org_seq = 1`, fmt.Sprintf("%x", make([]byte, identity.SignatureSize)))
	if rep, _ := s.Verify(ctx, "org", verifier); rep.OK || !strings.Contains(rep.Broken.Reason, "signature") {
		t.Fatalf("forged checkpoint: %+v", rep)
	}
}

func testSubscribe(t *testing.T, h Harness) {
	s := h.Open(t)
	var got [][]store.Event
	s.Subscribe(func(evs []store.Event) { got = append(got, evs) })
	put(t, s, "a", ent("k", "1", "o", 1), ent("k", "2", "o", 2))
	put(t, s, "a", ent("k", "1", "o", 1)) // no change, no call
	if len(got) != 1 || len(got[0]) != 2 || got[0][1].ID != "2" || got[0][0].Seq == 0 {
		t.Fatalf("subscriber got %+v", got)
	}
}

func testConcurrent(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Open(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				_, err := s.Update(ctx, "w", func(tx store.Tx) error {
					return tx.Put(ctx, "x", ent("k", fmt.Sprint(w, "-", i), fmt.Sprint("o", w%2), i))
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, org := range []string{"o0", "o1"} {
		rep, err := s.Verify(ctx, org, nil)
		if err != nil || !rep.OK || rep.Events != 20 {
			t.Fatalf("verify %s: %+v, %v", org, rep, err)
		}
	}
}

func testTelemetry(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Open(t)
	if _, err := s.Telemetry(ctx, "n1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing telemetry: %v", err)
	}
	ts := []store.Telemetry{{Node: "n1", Org: "o", Mesh: "m", Data: json.RawMessage(`{"rx":1}`)}, {Node: "n2", Org: "o", Mesh: "m", Data: json.RawMessage(`{}`)}}
	if err := s.PutTelemetry(ctx, ts); err != nil {
		t.Fatal(err)
	}
	ts[0].Data = json.RawMessage(`{"rx":2}`)
	if err := s.PutTelemetry(ctx, ts[:1]); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Telemetry(ctx, "n1"); err != nil || string(got.Data) != `{"rx":2}` {
		t.Fatalf("telemetry: %+v, %v", got, err)
	}
	if seq, _ := s.LastSeq(ctx); seq != 0 {
		t.Fatal("telemetry must not enter the event log")
	}
	if err := s.DeleteTelemetry(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Telemetry(ctx, "n1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted telemetry: %v", err)
	}
}

func testEventPaging(t *testing.T, h Harness) {
	ctx := context.Background()
	s := chain(t, h, 10)
	page, err := s.Events(ctx, store.EventQuery{Org: "org", Desc: true, Limit: 3})
	if err != nil || len(page) != 3 || page[0].OrgSeq != 10 || page[2].OrgSeq != 8 {
		t.Fatalf("first page: %+v, %v", page, err)
	}
	page, err = s.Events(ctx, store.EventQuery{Org: "org", Desc: true, Limit: 3, Before: 8})
	if err != nil || len(page) != 3 || page[0].OrgSeq != 7 {
		t.Fatalf("second page: %+v, %v", page, err)
	}
	page, err = s.Events(ctx, store.EventQuery{Org: "org", Kind: "k", ID: "3"})
	if err != nil || len(page) != 1 || page[0].ID != "3" {
		t.Fatalf("by target: %+v, %v", page, err)
	}
	for _, e := range page {
		if e.Org != "org" {
			t.Fatal("another tenant's event leaked into a query")
		}
	}
}
