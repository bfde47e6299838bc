package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/x0tta6bl4/x0t/store"
)

const eventCols = `seq, org, org_seq, time_ns, actor, action, kind, entity_id, before_rec, after_rec, prev_hash, hash`

func scanEvent(sc interface{ Scan(...any) error }) (*store.Event, error) {
	var e store.Event
	var seq, orgSeq, t int64
	var before, after sql.NullString
	var prev, hash string
	if err := sc.Scan(&seq, &e.Org, &orgSeq, &t, &e.Actor, &e.Action, &e.Kind, &e.ID, &before, &after, &prev, &hash); err != nil {
		return nil, err
	}
	e.Seq, e.OrgSeq = uint64(seq), uint64(orgSeq)
	e.Time = time.Unix(0, t).UTC()
	if before.Valid {
		e.Before = []byte(before.String)
	}
	if after.Valid {
		e.After = []byte(after.String)
	}
	// A hash that is not hex was altered; keep its bytes so that it fails.
	var err error
	if e.Prev, err = hex.DecodeString(prev); err != nil {
		e.Prev = []byte(prev)
	}
	if e.Hash, err = hex.DecodeString(hash); err != nil {
		e.Hash = []byte(hash)
	}
	return &e, nil
}

// Events implements store.Store.
func (db *DB) Events(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	where := []string{"org = ?", "org_seq > ?"}
	args := []any{q.Org, int64(q.After)}
	if q.Before > 0 {
		where = append(where, "org_seq < ?")
		args = append(args, int64(q.Before))
	}
	if q.Kind != "" {
		where = append(where, "kind = ?")
		args = append(args, q.Kind)
	}
	if q.ID != "" {
		where = append(where, "entity_id = ?")
		args = append(args, q.ID)
	}
	query := `SELECT ` + eventCols + ` FROM events WHERE ` + strings.Join(where, " AND ") + ` ORDER BY org_seq`
	if q.Desc {
		query += ` DESC`
	}
	if q.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, q.Limit)
	}
	rows, err := db.read.QueryContext(ctx, db.d.Rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("store: events: %w", err)
		}
		out = append(out, *e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	return out, nil
}

// AllEvents calls fn for every event of the store in Seq order (rebuilding
// the projection, tests).
func (db *DB) AllEvents(ctx context.Context, fn func(*store.Event) error) error {
	var after int64
	for {
		rows, err := db.read.QueryContext(ctx, db.d.Rebind(`SELECT `+eventCols+` FROM events WHERE seq > ? ORDER BY seq LIMIT 1000`), after)
		if err != nil {
			return fmt.Errorf("store: events: %w", err)
		}
		n := 0
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("store: events: %w", err)
			}
			n++
			after = int64(e.Seq)
			if err := fn(e); err != nil {
				rows.Close()
				return err
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// verifyBatch is how many events Verify reads at a time.
const verifyBatch = 500

// Verify implements store.Store: it walks org's chain in batches, compares
// its end with the recorded head, and checks every checkpoint against it.
func (db *DB) Verify(ctx context.Context, org string, v store.Verifier) (*store.Report, error) {
	cv := store.NewChainVerifier(org)
	var after int64
	for cv.Report.OK {
		rows, err := db.read.QueryContext(ctx, db.d.Rebind(`SELECT `+eventCols+` FROM events WHERE org = ? AND org_seq > ? ORDER BY org_seq LIMIT ?`),
			org, after, verifyBatch)
		if err != nil {
			return nil, fmt.Errorf("store: verify: %w", err)
		}
		n := 0
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: verify: %w", err)
			}
			n++
			after = int64(e.OrgSeq)
			if !cv.Add(e) {
				break
			}
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("store: verify: %w", err)
		}
		if n < verifyBatch {
			break
		}
	}
	if !cv.Report.OK {
		return &cv.Report, nil
	}
	h, err := db.head(ctx, db.read, org, "")
	if err != nil {
		return nil, err
	}
	if h == nil && cv.Report.Events > 0 {
		h = &store.Head{Org: org} // the head row was removed
	}
	cv.FinishHead(h)
	if !cv.Report.OK {
		return &cv.Report, nil
	}
	cps, err := db.Checkpoints(ctx, org, 0)
	if err != nil {
		return nil, err
	}
	for i := len(cps) - 1; i >= 0; i-- { // oldest first: report the earliest rewrite
		c := &cps[i]
		var at *store.Event
		row := db.read.QueryRowContext(ctx, db.d.Rebind(`SELECT `+eventCols+` FROM events WHERE org = ? AND org_seq = ?`), org, int64(c.OrgSeq))
		if at, err = scanEvent(row); errors.Is(err, sql.ErrNoRows) {
			at = nil
		} else if err != nil {
			return nil, fmt.Errorf("store: verify checkpoint: %w", err)
		}
		if b := store.CheckCheckpoint(c, at, v); b != nil {
			cv.Report.OK = false
			cv.Report.Broken = b
			return &cv.Report, nil
		}
		if v != nil && string(c.KeyID) == string(v.KeyID()) {
			cv.Report.Checkpoints++
		}
	}
	return &cv.Report, nil
}

// Checkpoint implements store.Store.
func (db *DB) Checkpoint(ctx context.Context, org string, s store.Signer) (*store.Checkpoint, error) {
	h, err := db.head(ctx, db.read, org, "")
	if err != nil || h == nil {
		return nil, err
	}
	c := &store.Checkpoint{Org: org, OrgSeq: h.OrgSeq, Hash: h.Hash, Time: time.Now().UTC().Truncate(time.Microsecond), KeyID: s.KeyID()}
	c.Signature = s.Sign(store.CheckpointLabel, c.Message())
	if _, err := db.write.ExecContext(ctx, db.d.Rebind(`INSERT INTO checkpoints (org, org_seq, hash, time_ns, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)`),
		org, int64(c.OrgSeq), hex.EncodeToString(c.Hash), c.Time.UnixNano(), hex.EncodeToString(c.KeyID), hex.EncodeToString(c.Signature)); err != nil {
		return nil, fmt.Errorf("store: checkpoint: %w", err)
	}
	return c, nil
}

// Checkpoints implements store.Store.
func (db *DB) Checkpoints(ctx context.Context, org string, limit int) ([]store.Checkpoint, error) {
	query := `SELECT org_seq, hash, time_ns, key_id, signature FROM checkpoints WHERE org = ? ORDER BY org_seq DESC, time_ns DESC`
	args := []any{org}
	if limit > 0 {
		query += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := db.read.QueryContext(ctx, db.d.Rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("store: checkpoints: %w", err)
	}
	defer rows.Close()
	var out []store.Checkpoint
	for rows.Next() {
		c := store.Checkpoint{Org: org}
		var seq, t int64
		var hash, keyID, sig string
		if err := rows.Scan(&seq, &hash, &t, &keyID, &sig); err != nil {
			return nil, fmt.Errorf("store: checkpoints: %w", err)
		}
		c.OrgSeq = uint64(seq)
		c.Time = time.Unix(0, t).UTC()
		c.Hash, _ = hex.DecodeString(hash)
		c.KeyID, _ = hex.DecodeString(keyID)
		c.Signature, _ = hex.DecodeString(sig)
		out = append(out, c)
	}
	return out, rows.Err()
}

// PutTelemetry implements store.Store.
func (db *DB) PutTelemetry(ctx context.Context, ts []store.Telemetry) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		q := db.d.Rebind(`INSERT INTO telemetry (node, org, mesh, time_ns, data) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (node) DO UPDATE SET org = excluded.org, mesh = excluded.mesh, time_ns = excluded.time_ns, data = excluded.data`)
		for _, t := range ts {
			if _, err := tx.ExecContext(ctx, q, t.Node, t.Org, t.Mesh, t.Time.UnixNano(), []byte(t.Data)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: telemetry: %w", err)
	}
	return nil
}

// Telemetry implements store.Store.
func (db *DB) Telemetry(ctx context.Context, node string) (*store.Telemetry, error) {
	t := &store.Telemetry{Node: node}
	var ns int64
	var data []byte
	err := db.read.QueryRowContext(ctx, db.d.Rebind(`SELECT org, mesh, time_ns, data FROM telemetry WHERE node = ?`), node).
		Scan(&t.Org, &t.Mesh, &ns, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: telemetry of %s", store.ErrNotFound, node)
	}
	if err != nil {
		return nil, fmt.Errorf("store: telemetry: %w", err)
	}
	t.Time = time.Unix(0, ns).UTC()
	t.Data = data
	return t, nil
}

// DeleteTelemetry implements store.Store.
func (db *DB) DeleteTelemetry(ctx context.Context, node string) error {
	if _, err := db.write.ExecContext(ctx, db.d.Rebind(`DELETE FROM telemetry WHERE node = ?`), node); err != nil {
		return fmt.Errorf("store: telemetry: %w", err)
	}
	return nil
}
