package node_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/handshake"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/wire"
)

// TestCookiesUnderLoad floods a node, from 16 source addresses (one address
// alone only fills its own share of the queue), with initiations that carry a
// valid mac1 but no cookie. Once its handshake work backs up, the node answers
// them with cookie replies instead of doing public-key work, while a genuine
// peer that restarts during the flood answers the cookie and gets its session.
func TestCookiesUnderLoad(t *testing.T) {
	m := newLab(t, nil)
	nodes := addNodes(t, m, []string{"alpha", "beta"})
	startAll(t, nodes)
	a, b := nodes[0], nodes[1]
	ping := func(within time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		_, err := b.Ping(ctx, a, false, 1)
		return err
	}
	if err := ping(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	trust, _ := identity.NewTrust(m.CA, time.Now())
	key, cert, _ := m.Issue("flooder", 30, time.Now(), time.Hour)
	var flooders []*rawPeer
	for range 16 {
		flooders = append(flooders, newRawPeer(t, a, key, cert, trust))
	}
	r := flooders[0]
	flood := r.initiation(1).Message

	var cookieReplies atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the flood: the same initiation, re-fragmented under fresh ids
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var id [4]byte
			rand.Read(id[:])
			frags, _ := wire.Fragments(flood, binary.LittleEndian.Uint32(id[:]))
			src := flooders[int(id[0])%len(flooders)]
			for _, f := range frags {
				src.conn.WriteToUDPAddrPort(f, a.Conn.LocalAddr())
			}
		}
	}()
	wg.Add(len(flooders) - 1)
	for _, f := range flooders { // count the cookie replies that come back
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				f.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				n, _, err := f.conn.ReadFromUDPAddrPort(buf)
				select {
				case <-stop:
					return
				default:
				}
				if err == nil && wire.PacketType(buf[:n]) == wire.TypeCookieReply {
					cookieReplies.Add(1)
				}
			}
		}()
	}

	deadline := time.Now().Add(10 * time.Second)
	for counter(a, "CookiesSent") == 0 {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("no cookie replies under a flood: %v", a.Node.Stats().Snapshot())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A genuine peer loses its session state and must handshake during the flood.
	if err := b.Restart(a); err != nil {
		t.Fatal(err)
	}
	// The flood overruns alpha's socket buffer (the kernel drops ~100,000
	// datagrams a run), so each of beta's initiations, eight fragments,
	// arrives whole only by chance; its retries come 1, 2, 4 and 8 s apart.
	// 30 s leaves room for six of them.
	start := time.Now()
	err := ping(30 * time.Second)
	recovered := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("genuine peer could not handshake during the flood: %v\nalpha %v\nbeta %v", err,
			a.Node.Stats().Snapshot(), b.Node.Stats().Snapshot())
	}
	t.Logf("cookie replies: %d counted by the node, %d received by the flooder; beta back in %v; alpha: %d rate-limited, %d queue drops",
		counter(a, "CookiesSent"), cookieReplies.Load(), recovered.Round(time.Millisecond), counter(a, "HSRateLimited"), counter(a, "DropQueueFull"))
	if cookieReplies.Load() == 0 {
		t.Fatal("the flooder received no cookie reply")
	}
}

// TestCookieForResponse: a peer under load answers the node's handshake
// response with a cookie reply. The node keeps the cookie, as WireGuard does,
// so that its next response to that peer carries mac2 and gets through;
// before, it dropped the reply, and every response to a peer under load was
// refused for as long as the load lasted.
func TestCookieForResponse(t *testing.T) {
	m := newLab(t, nil)
	nodes := addNodes(t, m, []string{"alpha"})
	startAll(t, nodes)
	a := nodes[0]
	trust, _ := identity.NewTrust(m.CA, time.Now())
	key, cert, _ := m.Issue("busy", 30, time.Now(), time.Hour)
	r := newRawPeer(t, a, key, cert, trust)
	busy := handshake.NewCookieChecker(cert.Keys.DH) // the raw peer's own checker
	from := a.Conn.LocalAddr()

	r.sendMsg(r.initiation(1).Message)
	resp := r.recvResponse(5 * time.Second)
	if resp == nil {
		t.Fatal("no response to a genuine initiation")
	}
	if err := busy.CheckMAC1(resp); err != nil {
		t.Fatalf("response mac1: %v", err)
	}
	if err := busy.CheckMAC2(resp, from, time.Now()); err == nil {
		t.Fatal("a response carried mac2 before any cookie")
	}
	reply, err := busy.MakeReply(resp, from, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r.send(reply)
	// The reply and the next initiation pass the same queues in order; the
	// initiation waits out the per-peer flood limit.
	time.Sleep(2 * handshake.MinInitiationInterval)
	r.sendMsg(r.initiation(2).Message)
	resp = r.recvResponse(5 * time.Second)
	if resp == nil {
		t.Fatalf("no response to the second initiation: %v", a.Node.Stats().Snapshot())
	}
	if err := busy.CheckMAC2(resp, from, time.Now()); err != nil {
		t.Fatalf("the response after a cookie reply: %v (HSUnexpected %d)", err, counter(a, "HSUnexpected"))
	}
}
