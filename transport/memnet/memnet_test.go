package memnet

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/x0tta6bl4/x0t/transport"
)

var (
	ipA = netip.MustParseAddr("10.0.0.1")
	ipB = netip.MustParseAddr("10.0.0.2")
	ipC = netip.MustParseAddr("fd00::3")
)

func listen(t *testing.T, n *Network, ip netip.Addr, port uint16) *Conn {
	t.Helper()
	c, err := n.Listen(netip.AddrPortFrom(ip, port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func msgs(to netip.AddrPort, seq0, count, size int) []transport.Message {
	ms := make([]transport.Message, count)
	for i := range ms {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(seq0 + i + j)
		}
		ms[i] = transport.Message{Buf: b, N: size, Addr: to}
	}
	return ms
}

func bufs(count, size int) []transport.Message {
	ms := make([]transport.Message, count)
	for i := range ms {
		ms[i].Buf = make([]byte, size)
	}
	return ms
}

// readN reads want datagrams; the caller knows that they are queued.
func readN(t *testing.T, c *Conn, want int) []transport.Message {
	t.Helper()
	var got []transport.Message
	for len(got) < want {
		in := bufs(7, 2048) // not a multiple of anything
		n, err := c.ReadBatch(in)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, in[:n]...)
	}
	return got
}

func equal(t *testing.T, got, want []transport.Message, from netip.AddrPort) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d datagrams, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Addr != from || !bytes.Equal(got[i].Buf[:got[i].N], want[i].Buf[:want[i].N]) {
			t.Fatalf("datagram %d: %d bytes from %v, want %d bytes from %v", i, got[i].N, got[i].Addr, want[i].N, from)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	n := New()
	a, b := listen(t, n, ipA, 0), listen(t, n, ipB, 4242)
	if a.LocalAddr().Port() == 0 || b.LocalAddr() != netip.AddrPortFrom(ipB, 4242) {
		t.Fatalf("local addresses %v %v", a.LocalAddr(), b.LocalAddr())
	}
	sent := msgs(b.LocalAddr(), 0, 20, 100)
	sent = append(sent, transport.Message{Buf: nil, N: 0, Addr: b.LocalAddr()}) // empty datagram
	if err := a.WriteBatch(sent); err != nil {
		t.Fatal(err)
	}
	want := make([]transport.Message, len(sent))
	for i, m := range sent { // the network must have copied: scribble over the sent buffers
		want[i] = transport.Message{Buf: bytes.Clone(m.Buf), N: m.N}
		clear(m.Buf)
	}
	equal(t, readN(t, b, len(sent)), want, a.LocalAddr())
	if s := n.Stats(); s.Sent != 21 || s.Delivered != 21 || s.Dropped() != 0 {
		t.Errorf("stats %+v", s)
	}
	// IPv4-mapped destinations and listen addresses are the IPv4 ones.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(ipB.As16()), 4242)
	if err := a.WriteBatch(msgs(mapped, 0, 1, 10)); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, b, 1); got[0].Addr != a.LocalAddr() {
		t.Errorf("from %v", got[0].Addr)
	}
	if _, err := n.Listen(mapped); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("listen on a taken mapped address: %v", err)
	}
	if _, err := n.Listen(netip.MustParseAddrPort("0.0.0.0:1")); err == nil {
		t.Error("listen on the wildcard succeeded")
	}
	// A short buffer truncates; a bad message is skipped with an error.
	if err := a.WriteBatch([]transport.Message{
		{Buf: make([]byte, 3), N: 4, Addr: b.LocalAddr()},
		msgs(b.LocalAddr(), 9, 1, 100)[0],
	}); err == nil {
		t.Error("no error for N beyond Buf")
	}
	in := bufs(1, 10)
	if n, err := b.ReadBatch(in); err != nil || n != 1 || in[0].N != 10 {
		t.Errorf("truncated read: %d %v %d", n, err, in[0].N)
	}
}

func TestLoss(t *testing.T) {
	const total, loss = 20000, 0.3
	run := func(seed uint64) Stats {
		n := New()
		n.Seed(seed)
		n.SetQueueLen(total)
		a, b := listen(t, n, ipA, 1), listen(t, n, ipB, 2)
		n.SetLink(ipA, ipB, LinkParams{Loss: loss})
		for range total / 100 {
			if err := a.WriteBatch(msgs(b.LocalAddr(), 0, 100, 10)); err != nil {
				t.Fatal(err)
			}
		}
		// The reverse direction is not lossy.
		if err := b.WriteBatch(msgs(a.LocalAddr(), 0, 100, 10)); err != nil {
			t.Fatal(err)
		}
		if s := n.LinkStats(ipB, ipA); s.Delivered != 100 {
			t.Errorf("reverse direction: %+v", s)
		}
		return n.LinkStats(ipA, ipB)
	}
	s := run(7)
	if s.Sent != total || s.Delivered+s.DroppedLoss != total {
		t.Fatalf("stats do not add up: %+v", s)
	}
	sd := math.Sqrt(total * loss * (1 - loss))
	if d := math.Abs(float64(s.DroppedLoss) - total*loss); d > 5*sd {
		t.Errorf("lost %d of %d, want about %.0f", s.DroppedLoss, total, total*loss)
	}
	if again := run(7); again != s {
		t.Errorf("same seed, different losses: %+v vs %+v", again, s)
	}
	if other := run(8); other == s {
		t.Errorf("different seeds, same losses: %+v", other)
	}
}

func TestDown(t *testing.T) {
	n := New()
	a, b := listen(t, n, ipA, 1), listen(t, n, ipB, 2)
	n.SetLink(ipA, ipB, LinkParams{Down: true})
	if !n.Link(ipA, ipB).Down || n.Link(ipB, ipA).Down {
		t.Fatal("Link does not report what SetLink set")
	}
	if err := a.WriteBatch(msgs(b.LocalAddr(), 0, 10, 10)); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteBatch(msgs(a.LocalAddr(), 0, 3, 10)); err != nil {
		t.Fatal(err)
	}
	readN(t, a, 3) // the other direction works
	if s := n.LinkStats(ipA, ipB); s.DroppedDown != 10 || s.Delivered != 0 {
		t.Errorf("down link: %+v", s)
	}
	n.SetLink(ipA, ipB, LinkParams{})
	sent := msgs(b.LocalAddr(), 100, 2, 10)
	if err := a.WriteBatch(sent); err != nil {
		t.Fatal(err)
	}
	equal(t, readN(t, b, 2), sent, a.LocalAddr())
}

func TestDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		a, b := listen(t, n, ipA, 1), listen(t, n, ipB, 2)
		n.SetLink(ipA, ipB, LinkParams{Delay: 50 * time.Millisecond})
		start := time.Now()
		var got []transport.Message
		var at []time.Duration
		done := make(chan struct{})
		go func() {
			defer close(done)
			for len(got) < 30 {
				in := bufs(64, 100)
				k, err := b.ReadBatch(in)
				if err != nil {
					t.Error(err)
					return
				}
				for range k {
					at = append(at, time.Since(start))
				}
				got = append(got, in[:k]...)
			}
		}()
		first := msgs(b.LocalAddr(), 0, 10, 10)
		if err := a.WriteBatch(first); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		second := msgs(b.LocalAddr(), 10, 10, 10)
		if err := a.WriteBatch(second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(29 * time.Millisecond)
		synctest.Wait()
		if s := n.LinkStats(ipA, ipB); s.Delivered != 0 {
			t.Fatalf("delivered %d before the delay", s.Delivered)
		}
		// Shorten the delay: later datagrams must not overtake earlier ones.
		n.SetLink(ipA, ipB, LinkParams{Delay: time.Millisecond})
		third := msgs(b.LocalAddr(), 20, 10, 10)
		if err := a.WriteBatch(third); err != nil {
			t.Fatal(err)
		}
		<-done
		want := append(append(first, second...), third...)
		equal(t, got, want, a.LocalAddr())
		for i, d := range at {
			lo := 50 * time.Millisecond
			if i >= 10 {
				lo = 70 * time.Millisecond
			}
			if d < lo || d > 70*time.Millisecond {
				t.Errorf("datagram %d arrived after %v, want %v..70ms", i, d, lo)
			}
		}
		// Datagrams in flight when the link goes down are lost.
		n.SetLink(ipA, ipB, LinkParams{Delay: 10 * time.Millisecond})
		if err := a.WriteBatch(msgs(b.LocalAddr(), 0, 5, 10)); err != nil {
			t.Fatal(err)
		}
		n.SetLink(ipA, ipB, LinkParams{Down: true})
		time.Sleep(time.Second)
		if s := n.LinkStats(ipA, ipB); s.DroppedDown != 5 || s.Delivered != 30 {
			t.Errorf("in flight at cut: %+v", s)
		}
	})
}

func TestQueueOverflowAndNoConn(t *testing.T) {
	n := New()
	n.SetQueueLen(8)
	a, b := listen(t, n, ipA, 1), listen(t, n, ipB, 2)
	sent := msgs(b.LocalAddr(), 0, 20, 10)
	if err := a.WriteBatch(sent); err != nil {
		t.Fatal(err)
	}
	equal(t, readN(t, b, 8), sent[:8], a.LocalAddr())
	nobody := netip.AddrPortFrom(ipC, 9)
	if err := a.WriteBatch(msgs(nobody, 0, 3, 10)); err != nil {
		t.Fatal(err)
	}
	s := n.Stats()
	if s.Delivered != 8 || s.DroppedQueue != 12 || s.DroppedNoConn != 3 || s.Sent != 23 {
		t.Errorf("stats %+v", s)
	}
}

func TestClose(t *testing.T) {
	n := New()
	a, b := listen(t, n, ipA, 1), listen(t, n, ipB, 2)
	errc := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := b.ReadBatch(bufs(4, 100))
			errc <- err
		}()
	}
	time.Sleep(20 * time.Millisecond) // let them block; the result is the same if not
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadBatch after Close: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock ReadBatch")
		}
	}
	if err := b.WriteBatch(msgs(a.LocalAddr(), 0, 1, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteBatch on closed conn: %v", err)
	}
	if err := b.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if err := a.WriteBatch(msgs(b.LocalAddr(), 0, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if s := n.Stats(); s.DroppedNoConn != 1 {
		t.Errorf("send to closed conn: %+v", s)
	}
	// The address is free again.
	listen(t, n, ipB, 2)
}

// TestConcurrent runs writers and readers at once, under -race, with link
// changes and a close in the middle.
func TestConcurrent(t *testing.T) {
	n := New()
	const nodes, rounds = 4, 200
	conns := make([]*Conn, nodes)
	for i := range conns {
		conns[i] = listen(t, n, netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)}), 7)
	}
	var readers, writers sync.WaitGroup
	for _, c := range conns {
		readers.Go(func() {
			in := bufs(16, 64)
			for {
				if _, err := c.ReadBatch(in); err != nil {
					if !errors.Is(err, net.ErrClosed) {
						t.Error(err)
					}
					return
				}
			}
		})
		writers.Go(func() {
			for r := range rounds {
				to := conns[r%nodes].LocalAddr()
				n.SetLink(c.LocalAddr().Addr(), to.Addr(), LinkParams{Loss: 0.1, Down: r%17 == 0, Delay: time.Duration(r%3) * time.Microsecond})
				if err := c.WriteBatch(msgs(to, r, 8, 32)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writers.Wait()
	time.Sleep(10 * time.Millisecond) // let delayed datagrams land
	for _, c := range conns {
		c.Close()
	}
	readers.Wait()
	s := n.Stats()
	if s.Sent != nodes*rounds*8 || s.Delivered+s.Dropped() != s.Sent {
		t.Errorf("stats do not add up: %+v", s)
	}
	t.Logf("%+v", s)
}

func Example() {
	n := New()
	a, _ := n.Listen(netip.MustParseAddrPort("192.0.2.1:4242"))
	b, _ := n.Listen(netip.MustParseAddrPort("192.0.2.2:4242"))
	a.WriteBatch([]transport.Message{{Buf: []byte("hello"), N: 5, Addr: b.LocalAddr()}})
	in := []transport.Message{{Buf: make([]byte, 1500)}}
	k, _ := b.ReadBatch(in)
	fmt.Printf("%d datagram from %v: %s\n", k, in[0].Addr, in[0].Buf[:in[0].N])

	n.SetLink(a.LocalAddr().Addr(), b.LocalAddr().Addr(), LinkParams{Down: true})
	a.WriteBatch([]transport.Message{{Buf: []byte("lost"), N: 4, Addr: b.LocalAddr()}})
	fmt.Printf("%+v\n", n.Stats())
	// Output:
	// 1 datagram from 192.0.2.1:4242: hello
	// {Sent:2 Delivered:1 DroppedLoss:0 DroppedDown:1 DroppedNoConn:0 DroppedQueue:0}
}

// TestViews: in view mode a datagram comes whole, as the network's own copy
// (len = cap = N), whatever buffers the caller had before.
func TestViews(t *testing.T) {
	n := New()
	a, b := listen(t, n, ipA, 0), listen(t, n, ipB, 4242)
	sent := append(msgs(b.LocalAddr(), 0, 3, 3000), transport.Message{Addr: b.LocalAddr()})
	if err := a.WriteBatch(sent); err != nil {
		t.Fatal(err)
	}
	in := make([]transport.Message, 2)
	var got []transport.Message
	for len(got) < len(sent) {
		in[0].Buf = nil
		k, err := b.ReadBatch(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range in[:k] {
			if len(m.Buf) != m.N || cap(m.Buf) != m.N {
				t.Fatalf("view of len %d cap %d for %d bytes", len(m.Buf), cap(m.Buf), m.N)
			}
		}
		got = append(got, in[:k]...)
	}
	equal(t, got, sent, a.LocalAddr())
}
