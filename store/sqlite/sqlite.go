// Package sqlite opens the control plane's store as an embedded SQLite
// database (modernc.org/sqlite, pure Go) in a directory.
//
// Durability: WAL journal with synchronous=FULL, so a commit returns only
// after its WAL frames are on disk and an acknowledged write survives kill -9
// and power loss. Writes go through one connection (SQLite has one writer
// at a time; BEGIN IMMEDIATE takes the lock up front instead of failing on
// upgrade), reads through a pool that WAL lets run beside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/x0tta6bl4/x0t/store/sqlstore"
)

// FileName is the database file in the data directory.
const FileName = "control.db"

// BusyTimeoutMillis is how long a statement waits for another process's lock.
const BusyTimeoutMillis = 10000

// Open opens (creating and migrating if needed) the store in dir.
func Open(ctx context.Context, dir string) (*sqlstore.DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	path := filepath.Join(dir, FileName)
	write, err := sql.Open("sqlite", dsn(path, "immediate", false))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	read, err := sql.Open("sqlite", dsn(path, "deferred", true))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0)*2)
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	// The first connection creates the file and switches it to WAL before
	// any reader opens it.
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		read.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	os.Chmod(path, 0o600)
	db, err := sqlstore.Open(ctx, Dialect{}, write, read)
	if err != nil {
		write.Close()
		read.Close()
		return nil, err
	}
	return db, nil
}

func dsn(path, txlock string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+fmt.Sprint(BusyTimeoutMillis)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(ON)")
	if readOnly {
		q.Add("_pragma", "query_only(ON)")
	}
	q.Set("_txlock", txlock)
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Dialect is SQLite's sqlstore.Dialect.
type Dialect struct{}

// Name implements sqlstore.Dialect.
func (Dialect) Name() string { return "sqlite" }

// Rebind implements sqlstore.Dialect: SQLite takes '?' as it is.
func (Dialect) Rebind(q string) string { return q }

// LockSuffix implements sqlstore.Dialect: a write transaction (BEGIN
// IMMEDIATE) already excludes other writers.
func (Dialect) LockSuffix() string { return "" }

// Retryable implements sqlstore.Dialect.
func (Dialect) Retryable(err error) bool {
	var e *sqlite.Error
	if errors.As(err, &e) {
		code := e.Code() & 0xff
		return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
	}
	return false
}

// Migrations implements sqlstore.Dialect. Never edit a released migration:
// add one.
func (Dialect) Migrations() []string {
	return []string{
		// 1: event log, chain heads, projection, checkpoints, telemetry.
		`CREATE TABLE events (
			seq        INTEGER PRIMARY KEY AUTOINCREMENT,
			org        TEXT    NOT NULL,
			org_seq    INTEGER NOT NULL,
			time_ns    INTEGER NOT NULL,
			actor      TEXT    NOT NULL,
			action     TEXT    NOT NULL,
			kind       TEXT    NOT NULL,
			entity_id  TEXT    NOT NULL,
			before_rec TEXT,
			after_rec  TEXT,
			prev_hash  TEXT    NOT NULL,
			hash       TEXT    NOT NULL,
			UNIQUE (org, org_seq)
		);
		CREATE INDEX events_target ON events (org, kind, entity_id, org_seq);
		CREATE TABLE chain_heads (
			org     TEXT PRIMARY KEY,
			org_seq INTEGER NOT NULL,
			hash    TEXT NOT NULL
		);
		CREATE TABLE entities (
			kind       TEXT    NOT NULL,
			id         TEXT    NOT NULL,
			org        TEXT    NOT NULL,
			parent     TEXT    NOT NULL,
			keys       TEXT    NOT NULL,
			data       BLOB    NOT NULL,
			version    INTEGER NOT NULL,
			created_ns INTEGER NOT NULL,
			updated_ns INTEGER NOT NULL,
			PRIMARY KEY (kind, id)
		);
		CREATE INDEX entities_scope ON entities (kind, org, parent, id);
		CREATE TABLE entity_keys (
			key  TEXT PRIMARY KEY,
			kind TEXT NOT NULL,
			id   TEXT NOT NULL
		);
		CREATE INDEX entity_keys_entity ON entity_keys (kind, id);
		CREATE TABLE checkpoints (
			org       TEXT    NOT NULL,
			org_seq   INTEGER NOT NULL,
			hash      TEXT    NOT NULL,
			time_ns   INTEGER NOT NULL,
			key_id    TEXT    NOT NULL,
			signature TEXT    NOT NULL,
			PRIMARY KEY (org, org_seq, time_ns)
		);
		CREATE TABLE telemetry (
			node    TEXT PRIMARY KEY,
			org     TEXT    NOT NULL,
			mesh    TEXT    NOT NULL,
			time_ns INTEGER NOT NULL,
			data    BLOB    NOT NULL
		);`,
	}
}
