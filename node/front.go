package node

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/x0tta6bl4/x0t/transport"
	"github.com/x0tta6bl4/x0t/wire"
)

// The front stage stands between the network and the handshake work. It does
// only cheap things: reassembling fragments, checking mac1, and, when the work
// queue is backing up, demanding cookies (mac2) and rate-limiting each source
// address. Only messages that pass reach the control loop, where public-key
// work happens. Fragments are drained at the speed of a memcpy, so a flood
// of expensive initiations can not crowd out a genuine peer's fragments.
const (
	frontQueueLen = 4096 // datagrams from the inbound loop
	workQueueLen  = 256  // complete, MAC-checked handshake messages
	// Under load, each source address may send this many handshake messages per
	// second (and a burst of rateBurst), as in WireGuard.
	ratePerSecond = 20
	rateBurst     = 5
)

// perSourceQueued bounds the handshake datagrams from one source address that
// may wait in the front queue (eight initiations' worth of fragments): one
// flooding address can not crowd the queue out for everyone else.
const perSourceQueued = 64

// sourceQuota counts queued datagrams per source, in hashed buckets: the
// inbound loop takes a slot, the front stage gives it back. The hash is keyed
// with a secret seed, so that nobody can pick source ports that share a
// genuine peer's bucket and crowd its handshakes out; with 4,096 buckets two
// of a few dozen sources share one by chance rarely (16 sources beside a
// peer: 0.4 %).
type sourceQuota struct {
	seed    maphash.Seed
	buckets [4096]atomic.Int32
}

func newSourceQuota() *sourceQuota { return &sourceQuota{seed: maphash.MakeSeed()} }

func (q *sourceQuota) index(src netip.AddrPort) int {
	var key [18]byte
	a := src.Addr().As16()
	copy(key[:], a[:])
	binary.BigEndian.PutUint16(key[16:], src.Port())
	return int(maphash.Bytes(q.seed, key[:]) % uint64(len(q.buckets)))
}

func (q *sourceQuota) bucket(src netip.AddrPort) *atomic.Int32 { return &q.buckets[q.index(src)] }

// take reserves a slot for a datagram from src, or reports that src has
// enough queued already.
func (q *sourceQuota) take(src netip.AddrPort) bool {
	b := q.bucket(src)
	if b.Add(1) > perSourceQueued {
		b.Add(-1)
		return false
	}
	return true
}

func (q *sourceQuota) give(src netip.AddrPort) { q.bucket(src).Add(-1) }

// enqueueFront hands a handshake datagram to the front stage, within the
// source's quota and the queue's capacity.
func (n *Node) enqueueFront(m inboundMsg) {
	if !n.quota.take(m.src) {
		n.stats.DropQueueFull.Add(1)
		return
	}
	select {
	case n.front <- m:
	default:
		n.quota.give(m.src)
		n.stats.DropQueueFull.Add(1)
	}
}

// underLoad reports whether handshake work arrives faster than it is done.
func (n *Node) underLoad() bool { return len(n.work) >= workQueueLen/8 }

type bucket struct {
	tokens float64
	last   time.Time
}

// rateLimiter is a token bucket per source address. Used by one goroutine.
type rateLimiter struct {
	buckets map[netip.Addr]*bucket
	swept   time.Time
}

func (r *rateLimiter) allow(src netip.Addr, now time.Time) bool {
	if now.Sub(r.swept) > time.Second {
		for a, b := range r.buckets {
			if now.Sub(b.last) > time.Second {
				delete(r.buckets, a)
			}
		}
		r.swept = now
	}
	b := r.buckets[src]
	if b == nil {
		b = &bucket{tokens: rateBurst, last: now}
		r.buckets[src] = b
	}
	b.tokens = min(rateBurst, b.tokens+now.Sub(b.last).Seconds()*ratePerSecond)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// frontLoop runs the front stage until the node closes.
func (n *Node) frontLoop() error {
	ra := wire.NewReassembler(wire.DefaultReassemblyLimits)
	rl := &rateLimiter{buckets: map[netip.Addr]*bucket{}}
	expire := time.NewTicker(time.Second)
	defer expire.Stop()
	for {
		select {
		case <-n.closed:
			return nil
		case <-expire.C:
			before := ra.Dropped
			ra.Expire(n.now())
			n.stats.DropFragment.Add(ra.Dropped - before)
		case m := <-n.front:
			n.quota.give(m.src)
			n.frontMsg(ra, rl, m)
		}
	}
}

func (n *Node) frontMsg(ra *wire.Reassembler, rl *rateLimiter, m inboundMsg) {
	now := n.now()
	msg := m.data
	if wire.PacketType(msg) == wire.TypeFragment {
		f, err := wire.ParseFragment(msg)
		if err != nil {
			n.stats.DropFragment.Add(1)
			return
		}
		before := ra.Dropped
		msg = ra.Add(m.src, f, now)
		n.stats.DropFragment.Add(ra.Dropped - before)
		if msg == nil {
			return
		}
	}
	switch wire.PacketType(msg) {
	case wire.TypeInitiation, wire.TypeResponse:
		if !n.admit(rl, msg, m.src, m.forwarded, now) {
			return
		}
	case wire.TypeCookieReply:
	default:
		n.stats.HSMalformedMessage.Add(1)
		return
	}
	select {
	case n.work <- inboundMsg{data: msg, src: m.src, from: m.from, forwarded: m.forwarded}:
	default:
		n.stats.DropQueueFull.Add(1)
	}
}

// admit applies the DoS defences to an initiation or response. It returns false
// when the message must not be processed further.
func (n *Node) admit(rl *rateLimiter, msg []byte, src netip.AddrPort, forwarded bool, now time.Time) bool {
	cookies := n.hs.Cookies()
	if err := cookies.CheckMAC1(msg); err != nil {
		n.stats.HSBadMAC.Add(1)
		return false
	}
	if !n.underLoad() {
		return true
	}
	if forwarded {
		// Through the mesh there is no address to send a cookie to; the
		// neighbour that relayed it is authenticated, so limit per neighbour.
		if !rl.allow(src.Addr(), now) {
			n.stats.HSRateLimited.Add(1)
			return false
		}
		return true
	}
	if err := cookies.CheckMAC2(msg, src, now); err != nil {
		reply, err := cookies.MakeReply(msg, src, now)
		if err != nil {
			return false
		}
		n.stats.CookiesSent.Add(1)
		if err := n.cfg.Conn.WriteBatch([]transport.Message{{Buf: reply, N: len(reply), Addr: src}}); err != nil && !closedErr(err) {
			n.log.Debug("sending cookie reply", "err", err)
		}
		return false
	}
	// The sender proved it owns its address; still, one address may not take all
	// of our handshake capacity.
	if !rl.allow(src.Addr(), now) {
		n.stats.HSRateLimited.Add(1)
		return false
	}
	return true
}
