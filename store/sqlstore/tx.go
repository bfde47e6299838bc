package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/x0tta6bl4/x0t/store"
)

// maxRetries bounds the retries of a transaction the database refused for
// contention (serialization failures, deadlocks).
const maxRetries = 5

// Update implements store.Store.
func (db *DB) Update(ctx context.Context, actor string, fn func(store.Tx) error) ([]store.Event, error) {
	db.writeM.Lock()
	defer db.writeM.Unlock()
	if db.closed {
		return nil, store.ErrClosed
	}
	for attempt := 0; ; attempt++ {
		events, err := db.update(ctx, actor, fn)
		if err != nil && attempt < maxRetries && db.d.Retryable(err) && ctx.Err() == nil {
			time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(events) > 0 {
			for _, fn := range db.subs {
				fn(events)
			}
		}
		return events, nil
	}
}

func (db *DB) update(ctx context.Context, actor string, fn func(store.Tx) error) ([]store.Event, error) {
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: begin: %w", err)
	}
	tx := &tx{reader: reader{db.d, sqlTx}, db: db, sql: sqlTx, actor: actor, now: db.now().UTC(), heads: map[string]*store.Head{}}
	if err := fn(tx); err != nil {
		sqlTx.Rollback()
		return nil, err
	}
	for org, h := range tx.heads {
		if !tx.touched[org] {
			continue
		}
		if _, err := sqlTx.ExecContext(ctx, db.d.Rebind(`INSERT INTO chain_heads (org, org_seq, hash) VALUES (?, ?, ?)
			ON CONFLICT (org) DO UPDATE SET org_seq = excluded.org_seq, hash = excluded.hash`),
			org, int64(h.OrgSeq), hex.EncodeToString(h.Hash)); err != nil {
			sqlTx.Rollback()
			return nil, fmt.Errorf("store: chain head: %w", err)
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return nil, fmt.Errorf("store: commit: %w", err)
	}
	return tx.events, nil
}

// tx is one read-write transaction.
type tx struct {
	reader
	db      *DB
	sql     *sql.Tx
	actor   string
	now     time.Time
	heads   map[string]*store.Head
	touched map[string]bool
	events  []store.Event
}

// Put implements store.Tx.
func (t *tx) Put(ctx context.Context, action string, e *store.Entity) error {
	if e.Kind == "" || e.ID == "" || e.Org == "" || action == "" {
		return errors.New("store: put: kind, id, org and action are required")
	}
	old, err := t.Get(ctx, e.Kind, e.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	var before []byte
	if old != nil {
		if old.Org != e.Org {
			return fmt.Errorf("store: put %s/%s: it belongs to another organization", e.Kind, e.ID)
		}
		if before, err = store.EncodeRecord(old); err != nil {
			return err
		}
	}
	keys := slices.Clone(e.Keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	after, err := store.EncodeRecord(&store.Entity{Kind: e.Kind, ID: e.ID, Parent: e.Parent, Keys: keys, Data: e.Data})
	if err != nil {
		return err
	}
	if before != nil && bytes.Equal(before, after) {
		return nil // nothing changed, nothing to record
	}
	for _, k := range keys {
		var kind, id string
		err := t.sql.QueryRowContext(ctx, t.d.Rebind(`SELECT kind, id FROM entity_keys WHERE key = ?`), k).Scan(&kind, &id)
		if err == nil && (kind != e.Kind || id != e.ID) {
			return fmt.Errorf("%w: %s", store.ErrConflict, k)
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: key %s: %w", k, err)
		}
	}
	ev, err := t.append(ctx, action, e.Kind, e.ID, e.Org, e.Parent, before, after)
	if err != nil {
		return err
	}
	// Keep exactly the bytes the event carries, so that the projection
	// rebuilt from the log equals this one.
	rec, err := store.DecodeRecord(after)
	if err != nil {
		return err
	}
	keysJSON, _ := json.Marshal(keys)
	created := t.now
	if old != nil {
		created = old.Created
	}
	if _, err := t.sql.ExecContext(ctx, t.d.Rebind(`INSERT INTO entities (`+entityCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (kind, id) DO UPDATE SET parent = excluded.parent, keys = excluded.keys, data = excluded.data,
		version = excluded.version, updated_ns = excluded.updated_ns`),
		e.Kind, e.ID, e.Org, e.Parent, string(keysJSON), []byte(rec.Data), int64(ev.Seq), created.UnixNano(), t.now.UnixNano()); err != nil {
		return fmt.Errorf("store: put %s/%s: %w", e.Kind, e.ID, err)
	}
	if old != nil {
		for _, k := range old.Keys {
			if !slices.Contains(keys, k) {
				if _, err := t.sql.ExecContext(ctx, t.d.Rebind(`DELETE FROM entity_keys WHERE key = ?`), k); err != nil {
					return fmt.Errorf("store: drop key: %w", err)
				}
			}
		}
	}
	for _, k := range keys {
		if old != nil && slices.Contains(old.Keys, k) {
			continue
		}
		if _, err := t.sql.ExecContext(ctx, t.d.Rebind(`INSERT INTO entity_keys (key, kind, id) VALUES (?, ?, ?)`), k, e.Kind, e.ID); err != nil {
			return fmt.Errorf("store: add key: %w", err)
		}
	}
	return nil
}

// Delete implements store.Tx.
func (t *tx) Delete(ctx context.Context, action, kind, id string) error {
	old, err := t.Get(ctx, kind, id)
	if err != nil {
		return err
	}
	before, err := store.EncodeRecord(old)
	if err != nil {
		return err
	}
	if _, err := t.append(ctx, action, kind, id, old.Org, old.Parent, before, nil); err != nil {
		return err
	}
	if _, err := t.sql.ExecContext(ctx, t.d.Rebind(`DELETE FROM entities WHERE kind = ? AND id = ?`), kind, id); err != nil {
		return fmt.Errorf("store: delete %s/%s: %w", kind, id, err)
	}
	if _, err := t.sql.ExecContext(ctx, t.d.Rebind(`DELETE FROM entity_keys WHERE kind = ? AND id = ?`), kind, id); err != nil {
		return fmt.Errorf("store: delete keys of %s/%s: %w", kind, id, err)
	}
	return nil
}

// append adds an event to org's chain.
func (t *tx) append(ctx context.Context, action, kind, id, org, parent string, before, after []byte) (*store.Event, error) {
	h, ok := t.heads[org]
	if !ok {
		var err error
		if h, err = t.db.head(ctx, t.sql, org, t.d.LockSuffix()); err != nil {
			return nil, err
		}
		if h == nil {
			h = &store.Head{Org: org, Hash: store.Genesis(org)}
		}
		t.heads[org] = h
	}
	ev := store.Event{OrgSeq: h.OrgSeq + 1, Time: t.now, Org: org, Actor: t.actor, Action: action, Kind: kind, ID: id,
		Before: before, After: after, Prev: h.Hash, Parent: parent}
	ev.Hash = store.Hash(&ev)
	var seq int64
	err := t.sql.QueryRowContext(ctx, t.d.Rebind(`INSERT INTO events
		(org, org_seq, time_ns, actor, action, kind, entity_id, before_rec, after_rec, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`),
		org, int64(ev.OrgSeq), ev.Time.UnixNano(), ev.Actor, action, kind, id, nullText(before), nullText(after),
		hex.EncodeToString(ev.Prev), hex.EncodeToString(ev.Hash)).Scan(&seq)
	if err != nil {
		return nil, fmt.Errorf("store: append event: %w", err)
	}
	ev.Seq = uint64(seq)
	h.OrgSeq, h.Hash = ev.OrgSeq, ev.Hash
	if t.touched == nil {
		t.touched = map[string]bool{}
	}
	t.touched[org] = true
	t.events = append(t.events, ev)
	return &t.events[len(t.events)-1], nil
}

// nullText stores a record as text (readable with the database's own
// tools), or NULL when absent.
func nullText(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}
