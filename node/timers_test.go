package node_test

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/lab"
)

// virtualClock runs ahead of real time by an offset the test moves.
type virtualClock struct{ offset atomic.Int64 }

func (c *virtualClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *virtualClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func clockedMesh(t *testing.T, keepalive time.Duration, names ...string) (*virtualClock, []*lab.Node) {
	t.Helper()
	clock := &virtualClock{}
	m := newLab(t, nil)
	m.Now = clock.now
	m.Keepalive = keepalive
	if testing.Verbose() {
		m.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	nodes := addNodes(t, m, names)
	startAll(t, nodes)
	return clock, nodes
}

func counter(n *lab.Node, name string) uint64 { return n.Node.Stats().Snapshot()[name] }

// TestRekeyWithoutLoss pings every 5 ms while the clock runs through 400 s:
// sessions are replaced at least every 120 s and not one echo is lost.
func TestRekeyWithoutLoss(t *testing.T) {
	clock, nodes := clockedMesh(t, 0, "alpha", "beta")
	a, b := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := a.Ping(ctx, b, false, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	startHS := counter(a, "HandshakesCompleted") + counter(b, "HandshakesCompleted")

	var lost, sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := 2; ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := a.Ping(ctx, b, seq%2 == 0, seq)
			cancel()
			sent.Add(1)
			if err != nil {
				lost.Add(1)
				t.Logf("echo %d lost: %v", seq, err)
			}
		}
	}()
	for range 200 { // 200 × 2 s of virtual time, 30 ms of real time apart
		time.Sleep(30 * time.Millisecond)
		clock.advance(2 * time.Second)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	rekeys := counter(a, "HandshakesCompleted") + counter(b, "HandshakesCompleted") - startHS
	t.Logf("%d echoes, %d lost, %d handshake completions over 400 s of virtual time", sent.Load(), lost.Load(), rekeys)
	if lost.Load() != 0 {
		t.Fatalf("%d of %d echoes lost across rekeys\nalpha %v\nbeta %v", lost.Load(), sent.Load(),
			a.Node.Stats().Snapshot(), b.Node.Stats().Snapshot())
	}
	// Each completed handshake counts once on each side: 400 s needs at least 3.
	if rekeys < 2*3 {
		t.Fatalf("only %d handshake completions over 400 s: sessions were not rekeyed every 120 s", rekeys)
	}
	// Not one packet was lost in the tunnel either: everything each side sent
	// arrived, and nothing was refused or had to wait for a session.
	if counter(a, "TxPackets") != counter(b, "RxPackets") || counter(b, "TxPackets") != counter(a, "RxPackets") {
		t.Fatalf("tunnel lost packets: alpha sent %d, beta received %d; beta sent %d, alpha received %d",
			counter(a, "TxPackets"), counter(b, "RxPackets"), counter(b, "TxPackets"), counter(a, "RxPackets"))
	}
	for _, name := range []string{"DropExpired", "DropUnknownSession", "DropReplay", "DropAuth"} {
		if c := counter(a, name) + counter(b, name); c != 0 {
			t.Fatalf("%s = %d during rekeys", name, c)
		}
	}
	for _, p := range a.Node.Peers() {
		if age := clock.now().Sub(p.LastHandshake); age > 130*time.Second {
			t.Fatalf("last handshake with %s is %v old", p.Name, age)
		}
	}
}

// TestIdleLinkStaysAlive: between neighbours, link probes (every 50 ms) do
// what keepalives would: an idle link stays up and answers at once.
func TestIdleLinkStaysAlive(t *testing.T) {
	clock, nodes := clockedMesh(t, 25*time.Second, "alpha", "beta")
	a, b := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.Ping(ctx, b, false, 1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for counter(a, "LinkUps") == 0 || counter(b, "LinkUps") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("links not up: %v", a.Node.Links())
		}
		time.Sleep(20 * time.Millisecond)
	}
	hs := counter(a, "HandshakesCompleted")
	// 26 s of idling, in steps small enough for the probes (every 50 ms of
	// real time) to keep up, as they would with real time: one jump would
	// find a probe in flight and look like 26 s without an answer.
	for range 52 {
		clock.advance(500 * time.Millisecond)
		time.Sleep(20 * time.Millisecond)
	}
	for _, l := range a.Node.Links() {
		if l.State != "up" {
			t.Fatalf("idle link went %s", l.State)
		}
	}
	if counter(a, "LinkDowns") != 0 {
		t.Fatal("an idle link was declared dead")
	}
	if _, err := a.Ping(ctx, b, false, 2); err != nil {
		t.Fatalf("after idling: %v", err)
	}
	if counter(a, "HandshakesCompleted") != hs {
		t.Fatal("idling needed a new handshake")
	}
}
