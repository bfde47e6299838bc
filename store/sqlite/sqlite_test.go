package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/store"
	"github.com/x0tta6bl4/x0t/store/sqlstore"
	"github.com/x0tta6bl4/x0t/store/storetest"
)

func TestConformance(t *testing.T) {
	dirs := map[store.Store]string{}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			dir := t.TempDir()
			s, err := Open(context.Background(), dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			dirs[s] = dir
			return s
		},
		Exec: func(t *testing.T, s store.Store, query string, args ...any) {
			t.Helper()
			rawExec(t, dirs[s], query, args...)
		},
	})
}

// rawExec edits the database behind the store's back, as someone with
// access to the file would.
func rawExec(t *testing.T, dir, query string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.Exec(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatalf("%s: no row changed", query)
	}
}

func TestPragmasAndMigrations(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "t", func(tx store.Tx) error {
		return tx.Put(ctx, "k", &store.Entity{Kind: "k", ID: "1", Org: "o", Data: json.RawMessage(`1`)})
	}); err != nil {
		t.Fatal(err)
	}
	v, err := s.SchemaVersion(ctx)
	if err != nil || v != len(Dialect{}.Migrations()) {
		t.Fatalf("schema version %d, %v", v, err)
	}
	s.Close()
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file: %v, %v", fi, err)
	}

	// Reopening applies nothing twice and keeps the data.
	s, err = Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(filepath.Join(dir, FileName), "deferred", true))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	var syncMode, busy, migrations int
	db.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
	db.QueryRow(`PRAGMA synchronous`).Scan(&syncMode)
	db.QueryRow(`PRAGMA busy_timeout`).Scan(&busy)
	db.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&migrations)
	if mode != "wal" || syncMode != 2 || busy != BusyTimeoutMillis || migrations != len(Dialect{}.Migrations()) {
		t.Fatalf("journal_mode %q, synchronous %d (2 is FULL), busy_timeout %d, migrations %d", mode, syncMode, busy, migrations)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "t", func(store.Tx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("update after close: %v", err)
	}
}

// TestKill9KeepsAcknowledgedWrites runs a child process that writes as fast
// as it can and prints the ID of every write once Update returned, kills it
// with SIGKILL mid-stream, and checks that every acknowledged write is in the
// database and the chain still verifies.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	if os.Getenv("X0T_STORE_WRITER") != "" {
		t.Skip("in the writer child")
	}
	dir := t.TempDir()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWriterChild$", "-test.v")
		cmd.Env = append(os.Environ(), "X0T_STORE_WRITER="+dir, "X0T_STORE_ROUND="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Collect every acknowledgement the child printed, up to its death;
		// kill it once it is well into its stream of writes.
		ackc := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if id, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
					ackc <- id
				}
			}
			close(ackc)
		}()
		var acked []string
		target := 150 + round*100
		deadline := time.After(60 * time.Second)
	collect:
		for len(acked) < target {
			select {
			case id, ok := <-ackc:
				if !ok {
					break collect
				}
				acked = append(acked, id)
			case <-deadline:
				break collect
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for id := range ackc { // printed before it died
			acked = append(acked, id)
		}
		cmd.Wait()
		if len(acked) < 100 {
			t.Fatalf("round %d: the writer acknowledged only %d writes", round, len(acked))
		}

		s, err := Open(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range acked {
			if _, err := s.Get(context.Background(), "item", id); err != nil {
				t.Fatalf("round %d: acknowledged write %s lost after kill -9: %v", round, id, err)
			}
		}
		rep, err := s.Verify(context.Background(), "org", nil)
		if err != nil || !rep.OK || rep.Events < uint64(len(acked)) {
			t.Fatalf("round %d: chain after kill -9: %+v, %v", round, rep, err)
		}
		t.Logf("round %d: %d acknowledged writes survived kill -9; %d events in the chain", round, len(acked), rep.Events)
		s.Close()
	}
}

// TestWriterChild is the child of TestKill9KeepsAcknowledgedWrites.
func TestWriterChild(t *testing.T) {
	dir := os.Getenv("X0T_STORE_WRITER")
	if dir == "" {
		t.Skip("runs only as the child of TestKill9KeepsAcknowledgedWrites")
	}
	ctx := context.Background()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	round := os.Getenv("X0T_STORE_ROUND")
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		id := fmt.Sprintf("r%s-%06d", round, i)
		_, err := s.Update(ctx, "writer", func(tx store.Tx) error {
			return tx.Put(ctx, "item.create", &store.Entity{Kind: "item", ID: id, Org: "org", Keys: []string{"item/" + id},
				Data: json.RawMessage(fmt.Sprintf(`{"i":%d,"pad":"%0200d"}`, i, i))})
		})
		if err != nil {
			t.Fatal(err)
		}
		// Acknowledge only after Update returned, as the API does.
		fmt.Fprintf(w, "ACK %s\n", id)
		w.Flush()
	}
}

var _ store.Store = (*sqlstore.DB)(nil)
