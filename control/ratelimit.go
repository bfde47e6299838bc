package control

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a token-bucket rate: Rate events per second, bursts of Burst.
type Limit struct {
	Rate  float64
	Burst int
}

// limiter keeps one token bucket per key (a client address, a node).
// Buckets idle for a while are dropped, so a flood from many addresses costs
// bounded memory.
type limiter[K comparable] struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[K]*bucket
	swept   time.Time
}

type ipLimiter = limiter[netip.Addr]

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

const (
	limiterIdle     = 10 * time.Minute
	limiterMaxAddrs = 100000
)

func newLimiter[K comparable](l Limit) *limiter[K] {
	return &limiter[K]{limit: rate.Limit(l.Rate), burst: l.Burst, buckets: map[K]*bucket{}, swept: time.Now()}
}

func (l *limiter[K]) get(ip K, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute || len(l.buckets) > limiterMaxAddrs {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > limiterIdle {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[ip]
	if b == nil {
		if len(l.buckets) >= limiterMaxAddrs {
			// Full of active addresses: share one bucket rather than grow.
			var zero K
			ip = zero
			if b = l.buckets[ip]; b != nil {
				b.seen = now
				return b.lim
			}
		}
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[ip] = b
	}
	b.seen = now
	return b.lim
}

// allow takes a token for ip, reporting whether one was there.
func (l *limiter[K]) allow(ip K) bool {
	now := time.Now()
	return l.get(ip, now).AllowN(now, 1)
}

// exhausted reports whether ip has no token left, without taking one: the
// authentication limiter counts failures and refuses an address that failed
// too often, whatever it sends next.
func (l *limiter[K]) exhausted(ip K) bool {
	now := time.Now()
	return l.get(ip, now).TokensAt(now) < 1
}

// clientIP is the peer address of a request. Forwarding headers are not
// trusted: the control plane terminates TLS itself.
func clientIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}
