// Package memnet is an in-memory datagram network for tests and the
// simulator: conns bound to addresses on one Network exchange datagrams as
// transport.Conns do over UDP, with per-direction link controls (loss, delay,
// cut) and counters.
//
// It is deliberately simple. One mutex guards the network (conns, links, the
// random source, counters); each conn has a bounded queue guarded by its own
// mutex and a sync.Cond, so Close wakes blocked readers. A full queue drops
// the datagram, as a NIC ring would. Datagrams are copied on send: sender and
// receiver never share memory. Delay is a FIFO line per link drained by a
// timer, so a link never reorders; timers come from package time, so
// testing/synctest makes delays deterministic.
package memnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/x0tta6bl4/x0t/transport"
)

// DefaultQueueLen is the receive queue of a conn, in datagrams.
const DefaultQueueLen = 1024

// batchSize is what Conn.BatchSize reports.
const batchSize = 128

// LinkParams shape the datagrams from one address to another.
type LinkParams struct {
	Loss  float64       // probability in [0, 1] that a datagram is lost
	Delay time.Duration // one-way delay of every datagram
	Down  bool          // the link drops everything, also datagrams still in flight
}

// Stats counts datagrams. Sent = Delivered + all drops + those in flight.
type Stats struct {
	Sent          uint64 // handed to the network by WriteBatch
	Delivered     uint64 // queued at the destination conn
	DroppedLoss   uint64 // lost at random on the link
	DroppedDown   uint64 // the link was down
	DroppedNoConn uint64 // nobody listens at the destination (or it closed meanwhile)
	DroppedQueue  uint64 // the destination's queue was full
}

// Dropped is the sum of all drops.
func (s Stats) Dropped() uint64 {
	return s.DroppedLoss + s.DroppedDown + s.DroppedNoConn + s.DroppedQueue
}

func (s *Stats) add(o Stats) {
	s.Sent += o.Sent
	s.Delivered += o.Delivered
	s.DroppedLoss += o.DroppedLoss
	s.DroppedDown += o.DroppedDown
	s.DroppedNoConn += o.DroppedNoConn
	s.DroppedQueue += o.DroppedQueue
}

type linkKey struct{ from, to netip.Addr }

type link struct {
	params LinkParams
	stats  Stats
	line   []inFlight // datagrams waiting out the delay, oldest first
	timer  *time.Timer
}

type inFlight struct {
	at time.Time
	to netip.AddrPort
	p  packet
}

type packet struct {
	from netip.AddrPort
	data []byte
}

// Network is an in-memory network. Its methods are safe for concurrent use.
type Network struct {
	mu       sync.Mutex
	conns    map[netip.AddrPort]*Conn
	links    map[linkKey]*link
	rng      *rand.Rand
	queueLen int
	stats    Stats
}

// New returns an empty network. Its loss is random from a fixed seed; see Seed.
func New() *Network {
	return &Network{
		conns:    make(map[netip.AddrPort]*Conn),
		links:    make(map[linkKey]*link),
		rng:      rand.New(rand.NewPCG(1, 2)),
		queueLen: DefaultQueueLen,
	}
}

// Seed reseeds the random source that decides losses.
func (n *Network) Seed(seed uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// SetQueueLen sets the receive queue length of conns opened from now on.
func (n *Network) SetQueueLen(datagrams int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.queueLen = max(1, datagrams)
}

// SetLink sets the parameters of the direction from -> to. Datagrams already
// delayed keep their time; a shorter delay does not overtake them.
func (n *Network) SetLink(from, to netip.Addr, p LinkParams) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.link(from.Unmap(), to.Unmap()).params = p
}

// Link returns the parameters of the direction from -> to.
func (n *Network) Link(from, to netip.Addr) LinkParams {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l := n.links[linkKey{from.Unmap(), to.Unmap()}]; l != nil {
		return l.params
	}
	return LinkParams{}
}

// Stats returns the counters of the whole network.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// LinkStats returns the counters of the direction from -> to.
func (n *Network) LinkStats(from, to netip.Addr) Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l := n.links[linkKey{from.Unmap(), to.Unmap()}]; l != nil {
		return l.stats
	}
	return Stats{}
}

// link returns the link from -> to, creating it. n.mu must be held.
func (n *Network) link(from, to netip.Addr) *link {
	k := linkKey{from, to}
	l := n.links[k]
	if l == nil {
		l = &link{}
		n.links[k] = l
	}
	return l
}

// count adds to the link's and the network's counters. n.mu must be held.
func (n *Network) count(l *link, s Stats) {
	l.stats.add(s)
	n.stats.add(s)
}

// Listen opens a conn at addr, which must be a specific address (the
// network has no routing to pick a source for a wildcard). Port 0 picks a
// free port.
func (n *Network) Listen(addr netip.AddrPort) (*Conn, error) {
	a := addr.Addr().Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return nil, fmt.Errorf("memnet: listen %v: need a specific address: %w", addr, syscall.EADDRNOTAVAIL)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	port := addr.Port()
	if port == 0 {
		for p := 49152; p <= 65535; p++ {
			if n.conns[netip.AddrPortFrom(a, uint16(p))] == nil {
				port = uint16(p)
				break
			}
		}
		if port == 0 {
			return nil, fmt.Errorf("memnet: listen %v: no free port: %w", addr, syscall.EADDRINUSE)
		}
	}
	local := netip.AddrPortFrom(a, port)
	if n.conns[local] != nil {
		return nil, fmt.Errorf("memnet: listen %v: %w", local, syscall.EADDRINUSE)
	}
	c := &Conn{net: n, local: local, queueLen: n.queueLen}
	c.cond.L = &c.mu
	n.conns[local] = c
	return c, nil
}

// send handles one datagram on the link from -> to. n.mu must be held.
func (n *Network) send(from, to netip.AddrPort, data []byte) {
	l := n.link(from.Addr(), to.Addr())
	switch {
	case l.params.Down:
		n.count(l, Stats{Sent: 1, DroppedDown: 1})
		return
	case l.params.Loss > 0 && n.rng.Float64() < l.params.Loss:
		n.count(l, Stats{Sent: 1, DroppedLoss: 1})
		return
	}
	n.count(l, Stats{Sent: 1})
	p := packet{from: from, data: append([]byte(nil), data...)}
	if l.params.Delay <= 0 && len(l.line) == 0 {
		n.deliver(l, to, p)
		return
	}
	l.line = append(l.line, inFlight{at: time.Now().Add(l.params.Delay), to: to, p: p})
	if len(l.line) == 1 {
		n.arm(l, l.params.Delay)
	}
}

// arm schedules the delay line of l to be drained after d. n.mu must be held.
func (n *Network) arm(l *link, d time.Duration) {
	if l.timer == nil {
		l.timer = time.AfterFunc(d, func() { n.drain(l) })
		return
	}
	l.timer.Reset(d)
}

// drain delivers the datagrams of l whose delay is over.
func (n *Network) drain(l *link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	i := 0
	for ; i < len(l.line) && !l.line[i].at.After(now); i++ {
		f := &l.line[i]
		if l.params.Down {
			n.count(l, Stats{DroppedDown: 1})
		} else {
			n.deliver(l, f.to, f.p)
		}
		l.line[i] = inFlight{}
	}
	l.line = append(l.line[:0], l.line[i:]...)
	if len(l.line) > 0 {
		n.arm(l, l.line[0].at.Sub(now))
	}
}

// deliver queues p at the conn bound to to. n.mu must be held.
func (n *Network) deliver(l *link, to netip.AddrPort, p packet) {
	c := n.conns[to]
	if c == nil {
		n.count(l, Stats{DroppedNoConn: 1})
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		n.count(l, Stats{DroppedNoConn: 1})
	case len(c.q)-c.head >= c.queueLen:
		n.count(l, Stats{DroppedQueue: 1})
	default:
		if c.head > 0 && len(c.q) == cap(c.q) { // reuse the space of datagrams read
			k := copy(c.q, c.q[c.head:])
			clear(c.q[k:])
			c.q, c.head = c.q[:k], 0
		}
		c.q = append(c.q, p)
		n.count(l, Stats{Delivered: 1})
		c.cond.Signal()
	}
}

// Conn is a datagram endpoint on a Network. It implements transport.Conn.
type Conn struct {
	net   *Network
	local netip.AddrPort

	mu       sync.Mutex
	cond     sync.Cond
	q        []packet // queued datagrams are q[head:]
	head     int
	queueLen int
	closed   bool
}

var _ transport.Conn = (*Conn)(nil)

// LocalAddr returns the address the conn is bound to.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// BatchSize returns 128.
func (c *Conn) BatchSize() int { return batchSize }

// ReadBatch implements transport.Conn. A datagram longer than its buffer is
// truncated; in view mode it is handed over whole.
func (c *Conn) ReadBatch(msgs []transport.Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.head == len(c.q) && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		return 0, fmt.Errorf("memnet: read %s: %w", c.local, net.ErrClosed)
	}
	views := msgs[0].Buf == nil // the packet's own copy becomes the view
	k := 0
	for ; k < len(msgs) && c.head < len(c.q); k++ {
		p := &c.q[c.head]
		if views {
			msgs[k].Buf = p.data[:len(p.data):len(p.data)]
			msgs[k].N = len(p.data)
		} else {
			msgs[k].N = copy(msgs[k].Buf, p.data)
		}
		msgs[k].Addr = p.from
		*p = packet{}
		c.head++
	}
	if c.head == len(c.q) {
		c.q, c.head = c.q[:0], 0
	}
	return k, nil
}

// WriteBatch implements transport.Conn. Like UDP it reports no error for
// datagrams lost on the way; see Network.Stats.
func (c *Conn) WriteBatch(msgs []transport.Message) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return fmt.Errorf("memnet: write %s: %w", c.local, net.ErrClosed)
	}
	var firstErr error
	n := c.net
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range msgs {
		m := &msgs[i]
		var err error
		switch {
		case m.N < 0 || m.N > len(m.Buf):
			err = fmt.Errorf("memnet: write %s: message %d: length %d out of buffer of %d", c.local, i, m.N, len(m.Buf))
		case !m.Addr.IsValid() || m.Addr.Port() == 0:
			err = fmt.Errorf("memnet: write %s: bad destination %v: %w", c.local, m.Addr, syscall.EINVAL)
		case m.N > transport.MaxSegmentBuf:
			err = fmt.Errorf("memnet: write %s to %s: %d bytes: %w", c.local, m.Addr, m.N, syscall.EMSGSIZE)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		to := netip.AddrPortFrom(m.Addr.Addr().Unmap(), m.Addr.Port())
		n.send(c.local, to, m.Buf[:m.N])
	}
	return firstErr
}

// Close unbinds the conn and wakes blocked readers, which return an error
// satisfying errors.Is(err, net.ErrClosed). Queued datagrams are discarded.
func (c *Conn) Close() error {
	c.net.mu.Lock()
	if c.net.conns[c.local] == c {
		delete(c.net.conns, c.local)
	}
	c.net.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("memnet: close %s: %w", c.local, net.ErrClosed)
	}
	c.closed = true
	c.q, c.head = nil, 0
	c.cond.Broadcast()
	return nil
}
