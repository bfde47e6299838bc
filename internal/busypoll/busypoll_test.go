//go:build linux

package busypoll

import (
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func pipe(t *testing.T) (r, w *os.File, p *Poller, stop *atomic.Bool) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	stop = new(atomic.Bool)
	return r, w, New(rc, stop), stop
}

func TestWaitSeesData(t *testing.T) {
	r, w, p, _ := pipe(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(20 * time.Millisecond)
		w.Write([]byte("x"))
	}()
	ready, err := p.Wait(time.Now().Add(time.Minute))
	if err != nil || !ready {
		t.Fatalf("Wait = %v, %v; want data", ready, err)
	}
	<-done
	// Already readable: no polling at all.
	if ready, err := p.Wait(time.Now().Add(-time.Second)); !ready || err != nil {
		t.Fatalf("Wait on a readable pipe past its deadline = %v, %v", ready, err)
	}
	var b [1]byte
	if n, err := r.Read(b[:]); n != 1 || err != nil {
		t.Fatalf("read after Wait: %d, %v", n, err)
	}
}

func TestWaitGivesUp(t *testing.T) {
	_, _, p, stop := pipe(t)
	start := time.Now()
	ready, err := p.Wait(start.Add(30 * time.Millisecond))
	if ready || err != nil {
		t.Fatalf("Wait on an empty pipe = %v, %v", ready, err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("Wait gave up after %v, before its deadline", d)
	}

	// A closing owner stops the poll long before the deadline.
	go func() {
		time.Sleep(20 * time.Millisecond)
		stop.Store(true)
	}()
	start = time.Now()
	ready, err = p.Wait(start.Add(10 * time.Second))
	if ready || err != nil {
		t.Fatalf("Wait after stop = %v, %v", ready, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Wait ignored stop and polled for %v", d)
	}
}

// TestWaitHangup: a reader whose writer is gone must read (and see EOF), not
// wait for data that will never come.
func TestWaitHangup(t *testing.T) {
	_, w, p, _ := pipe(t)
	w.Close()
	if ready, err := p.Wait(time.Now().Add(time.Minute)); !ready || err != nil {
		t.Fatalf("Wait after the writer closed = %v, %v", ready, err)
	}
}

func TestWaitClosed(t *testing.T) {
	r, _, p, _ := pipe(t)
	r.Close()
	if ready, err := p.Wait(time.Now().Add(time.Minute)); ready || err == nil {
		t.Fatalf("Wait on a closed file = %v, %v; want an error", ready, err)
	}
}

// TestWaitOthersRun: while one goroutine polls, the others get turns often,
// not only when the scheduler preempts the poller (every 10 ms): with one Go
// processor, count another goroutine's turns during 50 ms of polling.
func TestWaitOthersRun(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	_, _, p, _ := pipe(t)
	var turns atomic.Int64
	var done atomic.Bool
	go func() {
		for !done.Load() {
			turns.Add(1)
			runtime.Gosched()
		}
	}()
	runtime.Gosched() // let it start
	before := turns.Load()
	p.Wait(time.Now().Add(50 * time.Millisecond))
	done.Store(true)
	if n := turns.Load() - before; n < 20 {
		t.Fatalf("another goroutine ran %d times during 50 ms of polling", n)
	}
}

func TestWaitAllocs(t *testing.T) {
	_, w, p, _ := pipe(t)
	w.Write([]byte("x"))
	if n := testing.AllocsPerRun(1000, func() { p.Wait(time.Now()) }); n != 0 {
		t.Fatalf("Wait allocates %v times per call", n)
	}
}
