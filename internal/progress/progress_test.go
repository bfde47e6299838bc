package progress

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/internal/testutil"
)

// A pipe or a file is not a terminal: nothing at all is written, and Wrap
// hands back the writer untouched.
func TestQuietWhenNotATerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var buf bytes.Buffer
	for name, out := range map[string]interface {
		Write([]byte) (int, error)
	}{"file": f, "pipe": w, "buffer": &buf} {
		rep := New(out)
		if rep.Enabled() {
			t.Fatalf("%s: reporter enabled", name)
		}
		p := rep.Start("working %d", 1)
		p.Update("still working")
		time.Sleep(30 * time.Millisecond)
		p.End(errors.New("x"))
		rep.Start("again").Done()
		if got := rep.Wrap(&buf); got != &buf {
			t.Errorf("%s: Wrap wrapped a disabled reporter's writer", name)
		}
	}
	if fi, _ := f.Stat(); fi.Size() != 0 {
		t.Errorf("file got %d bytes", fi.Size())
	}
	if buf.Len() != 0 {
		t.Errorf("buffer got %q", buf.String())
	}
	w.Close()
	var got bytes.Buffer
	got.ReadFrom(r)
	if got.Len() != 0 {
		t.Errorf("pipe got %q", got.String())
	}
}

// A nil Reporter is a valid no-op, so callers need not check.
func TestNilReporter(t *testing.T) {
	var rep *Reporter
	rep.Start("x").Done()
	rep.Start("y").Fail()
	if rep.Enabled() {
		t.Fatal("nil reporter enabled")
	}
}

// On a terminal (forced here: the test has none) a phase is drawn with a
// spinner and its elapsed time, redrawn in place, and ends with a mark and
// its duration on its own line.
func TestDrawsOnATerminal(t *testing.T) {
	var out testutil.SyncBuffer
	rep := Forced(&out)
	rep.tick = 5 * time.Millisecond
	clock := time.Unix(0, 0)
	var mu sync.Mutex
	rep.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	p := rep.Start("waiting for approval of node %s", "alpha")
	advance(1500 * time.Millisecond)
	time.Sleep(50 * time.Millisecond) // several ticks
	p.Update("waiting for approval of node alpha (poll 2)")
	advance(1500 * time.Millisecond)
	p.Done()
	got := out.String()
	for _, want := range []string{
		"\r\x1b[K⠋ waiting for approval of node alpha  0.0s",
		"waiting for approval of node alpha  1.5s",
		"(poll 2)",
		"✓ waiting for approval of node alpha (poll 2) (3.0s)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%q", want, got)
		}
	}
	if n := strings.Count(got, "\r\x1b[K"); n < 4 {
		t.Errorf("%d redraws, want several:\n%q", n, got)
	}
	// Nothing is drawn after the final line.
	time.Sleep(30 * time.Millisecond)
	if after := out.String(); after != got {
		t.Errorf("drawn after Done: %q", after[len(got):])
	}

	// Failure, and a second phase ending the first.
	out2 := &testutil.SyncBuffer{}
	rep = Forced(out2)
	rep.Start("one")
	rep.Start("two").End(errors.New("boom"))
	got = out2.String()
	if !strings.Contains(got, "✓ one (") || !strings.Contains(got, "✗ two (") || strings.Index(got, "✓ one") > strings.Index(got, "✗ two") {
		t.Errorf("sequential phases:\n%q", got)
	}
}

// Output sharing the terminal erases the spinner line before it is written
// and the spinner is drawn again after a complete line, never over a partial one.
func TestWrapKeepsLinesApart(t *testing.T) {
	var out testutil.SyncBuffer
	rep := Forced(&out)
	rep.tick = time.Hour // draw only when told
	rep.now = func() time.Time { return time.Unix(0, 0) }
	p := rep.Start("pinging")
	w := rep.Wrap(&out)
	w.Write([]byte("alpha -> beta"))
	w.Write([]byte(" 1.2 ms\n"))
	p.Done()
	got := out.String()
	want := "\r\x1b[K⠋ pinging  0.0s" + // drawn at Start
		"\r\x1b[Kalpha -> beta" + // erased, then the partial line, and no spinner over it
		" 1.2 ms\n" + // the line completed
		"\r\x1b[K⠋ pinging  0.0s" // drawn again below
	if !strings.HasPrefix(got, want) {
		t.Fatalf("got\n%q\nwant prefix\n%q", got, want)
	}
	if !strings.HasSuffix(got, "\r\x1b[K✓ pinging (0.0s)\n") {
		t.Fatalf("final line: %q", got)
	}
}

func TestElapsed(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0.0s", 1250 * time.Millisecond: "1.2s", 59 * time.Second: "59.0s", 125 * time.Second: "2m5s",
	} {
		if got := elapsed(d); got != want {
			t.Errorf("elapsed(%v) = %q, want %q", d, got, want)
		}
	}
}
