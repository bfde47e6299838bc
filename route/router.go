// Package route is x0t's link-state routing protocol as a pure state machine:
// signed link-state adverts, reliable flooding with sequence numbers, aging and
// database sync, SPF with a two-way check, and a loop-free alternate next hop
// per destination for local repair before the protocol converges.
//
// A Router does no I/O, starts no goroutines and reads time only through its
// Config.Now. The caller feeds it link events (from linkmon) and received
// messages, calls Tick at NextDeadline, sends what Outbox returns to the named
// neighbours over their authenticated link sessions, and publishes Table to the
// data plane. A Router is not safe for concurrent use; a Table is. The protocol
// and its loop-freedom argument are in docs/routing.md.
package route

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
)

// Errors returned by Receive (wrapped) for adverts it rejects. A Verify
// function should wrap ErrUnknownOrigin when it has no key for the origin.
var (
	ErrUnknownOrigin = errors.New("route: unknown advert origin")
	ErrForged        = errors.New("route: advert signature does not verify")
	ErrRateLimited   = errors.New("route: neighbour exceeds the advert rate limit")
)

// Config configures a Router. Zero durations take the defaults in brackets.
type Config struct {
	Self identity.NodeID
	// Sign signs an advert body under label (identity.SigningKey.Sign fits).
	Sign func(label string, msg []byte) []byte
	// Verify checks origin's signature over msg under label. It is called at
	// most once per new advert per router.
	Verify func(origin identity.NodeID, label string, msg, sig []byte) error
	// Now is the clock (time.Now).
	Now func() time.Time

	MinOriginateInterval time.Duration // link changes coalesced into one advert per interval [100ms]
	RefreshInterval      time.Duration // re-originate an unchanged advert [30m]
	MaxAge               time.Duration // drop an advert not refreshed for this long [3×RefreshInterval]
	SyncInterval         time.Duration // database summary to each neighbour [60s]
	RxmtInterval         time.Duration // retransmit an unacknowledged advert [1s]
	AckDelay             time.Duration // batch acknowledgements [20ms]
	PullDelay            time.Duration // ask for adverts a neighbour's summary listed and we lack, if still missing after [100ms]
	SPFDelay             time.Duration // SPF after a quiet period [10ms]
	SPFHold              time.Duration // first hold between SPF runs in a burst, doubling [50ms]
	SPFMaxHold           time.Duration // longest hold [250ms]: a router in hold-down next to one that is not makes a micro-loop
	// Hysteresis is the relative change of a link's measured metric needed
	// before the advertised metric follows it [0.5]. Generous, because every
	// change floods a signed advert mesh-wide: only changes that matter count.
	Hysteresis float64
	// MetricHold is the least time between two changes of a link's
	// advertised metric, unless the new one is half or double the old
	// [10s]: every change floods a signed advert through the whole mesh.
	MetricHold time.Duration
	// FloodBurst and FloodRate bound the routing messages we take from one
	// neighbour: a token bucket of FloodBurst + 8·|LSDB| messages refilled
	// at FloodRate + 2·|LSDB| per second [4096, 1024]. An honest neighbour
	// sends each advert about once per sequence number, plus acks and
	// summaries, so a full database sync, or every origin re-originating at
	// once, fits. The bucket bounds cheap work (decoding, dedup); signature
	// checks are bounded by strikes and per-origin arrival limits.
	FloodBurst int
	FloodRate  float64
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.MinOriginateInterval, 100*time.Millisecond)
	def(&c.RefreshInterval, 30*time.Minute)
	def(&c.MaxAge, 3*c.RefreshInterval)
	def(&c.SyncInterval, 60*time.Second)
	def(&c.RxmtInterval, time.Second)
	def(&c.AckDelay, 20*time.Millisecond)
	def(&c.PullDelay, 100*time.Millisecond)
	def(&c.SPFDelay, 10*time.Millisecond)
	def(&c.SPFHold, 50*time.Millisecond)
	def(&c.SPFMaxHold, 250*time.Millisecond)
	def(&c.MetricHold, 10*time.Second)
	if c.Hysteresis <= 0 {
		c.Hysteresis = 0.5
	}
	if c.FloodBurst <= 0 {
		c.FloodBurst = 4096
	}
	if c.FloodRate <= 0 {
		c.FloodRate = 1024
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Out is a message for a neighbour. Msg may be shared between several Outs
// and with the router's database: treat it as read-only.
type Out struct {
	To  identity.NodeID
	Msg []byte
}

// EventKind classifies an Event.
type EventKind uint8

// Events a router reports for the MAPE-K loop: evidence against a neighbour,
// or a surprise about our own adverts.
const (
	// EventFlood: a neighbour sent more adverts than the rate limit allows
	// (reported at most once per 10 s per neighbour).
	EventFlood EventKind = iota + 1
	// EventForged: a neighbour sent an advert whose signature does not
	// verify. Honest routers verify before flooding, so the neighbour itself
	// is faulty or malicious.
	EventForged
	// EventMalformed: a neighbour sent a message that does not decode.
	EventMalformed
	// EventSelfSeq: a valid advert of our own with a sequence number at or
	// above ours came back (we restarted with a clock behind our last run,
	// or our key is used elsewhere); we jumped past it.
	EventSelfSeq
)

func (k EventKind) String() string {
	switch k {
	case EventFlood:
		return "flood"
	case EventForged:
		return "forged"
	case EventMalformed:
		return "malformed"
	case EventSelfSeq:
		return "self-seq"
	}
	return fmt.Sprintf("event(%d)", k)
}

// Event is something a router noticed that a human or the MAPE-K loop should
// know about.
type Event struct {
	Kind      EventKind
	At        time.Time
	Neighbour identity.NodeID
	Origin    identity.NodeID
	Seq       uint64
	Err       error
}

// Stats are cumulative counters.
type Stats struct {
	Originated    uint64 // adverts we signed
	Received      uint64 // adverts received
	Accepted      uint64 // new adverts installed
	Duplicate     uint64 // adverts we already had (normal in flooding)
	Old           uint64 // adverts older than ours: replays or stale copies, rejected
	Forged        uint64 // bad signature, rejected
	UnknownOrigin uint64 // no key for the origin, rejected
	Malformed     uint64 // undecodable messages, rejected
	RateLimited   uint64 // messages dropped by a neighbour's rate limit or strikes
	Deferred      uint64 // adverts held back by the per-origin arrival limit
	Expired       uint64 // adverts aged out
	Retransmits   uint64
	SentMsgs      uint64
	SentBytes     uint64
	SPFRuns       uint64
	EventsDropped uint64
	LSDBSize      int
	Neighbours    int // links up
}

const (
	maxEvents           = 256
	maxRetransmitTries  = 16
	floodReportInterval = 10 * time.Second
	// A neighbour has strikeBurst strikes; each forged or malformed message
	// costs one, one comes back every strikeRefill. Without strikes, its
	// adverts are not verified: honest neighbours never lose a strike, and a
	// lying one can not make us spend much CPU on signature checks.
	strikeBurst  = 8
	strikeRefill = 10 * time.Second
	// A pull (our summary of the range holding adverts a neighbour listed
	// and we lack) is repeated every RxmtInterval while any is still
	// missing, up to maxPullTries times; at most maxWant adverts per
	// neighbour are remembered for it. The periodic sync repairs the rest.
	maxPullTries = 4
	maxWant      = 4096
)

type lsdbEntry struct {
	raw     lsaView
	seq     uint64
	arrived time.Time
	expires time.Time // zero for our own
	// waiting lists the neighbours we sent this advert to that have not
	// acknowledged it: retransmission state lives with the advert, so an
	// acknowledgement costs the database lookup the advert needs anyway.
	waiting []waitRec
	waitBuf [4]waitRec // waiting's first backing array, in the same allocation
	// nbrIdx are the graph indices of the listed neighbours (-1: not in the
	// database), valid while idxVer equals the router's originsVer.
	nbrIdx []int32
	known  []int32 // the indices >= 0 of nbrIdx, ascending
	idxVer uint64
}

type waitRec struct {
	n     *neighbour
	due   int64 // UnixNano
	tries uint8
}

func newEntry(raw lsaView, now time.Time) *lsdbEntry {
	e := &lsdbEntry{raw: raw, seq: raw.seq(), arrived: now}
	e.waiting = e.waitBuf[:0]
	return e
}

type neighbour struct {
	id       identity.NodeID
	up       bool
	metric   uint32 // advertised
	measured uint32 // latest SetMetric
	metricAt time.Time
	gone     bool // dropped: retransmission records naming it are stale
	acks     []Entry
	ackAt    time.Time
	syncAt   time.Time
	syncs    uint64
	tokens   float64
	tokensAt time.Time
	strikes  float64
	reported time.Time
	heard    time.Time
	// want holds the adverts (origin → seq) the neighbour's summaries
	// listed that we lack; a pull for those still missing is due at pullAt.
	want      map[identity.NodeID]uint64
	pullAt    time.Time
	pullTries uint8
}

type deferredLSA struct {
	raw lsaView
	n   *neighbour
	at  time.Time
}

type tombstone struct {
	seq   uint64
	until time.Time
}

// Router is one node's routing protocol instance.
type Router struct {
	cfg      Config
	lsdb     map[identity.NodeID]*lsdbEntry
	tombs    map[identity.NodeID]tombstone
	deferred map[identity.NodeID]*deferredLSA
	nbrs     map[identity.NodeID]*neighbour
	nbrList  []*neighbour // nbrs sorted by ID, for deterministic output
	rxmtAt   time.Time

	originsVer uint64 // changes whenever an origin enters or leaves lsdb

	seq         uint64
	lastOrig    time.Time
	origPending bool
	origAt      time.Time
	refreshAt   time.Time

	spfAt   time.Time
	lastSPF time.Time
	spfHold time.Duration
	spf     spfState

	scanAt  time.Time
	table   *Table
	version uint64
	out     []Out
	events  []Event
	stats   Stats
}

// New returns a router with no links. It originates its first advert when
// the first link comes up.
func New(cfg Config) *Router {
	cfg.defaults()
	r := &Router{
		cfg:      cfg,
		lsdb:     make(map[identity.NodeID]*lsdbEntry),
		tombs:    make(map[identity.NodeID]tombstone),
		deferred: make(map[identity.NodeID]*deferredLSA),
		nbrs:     make(map[identity.NodeID]*neighbour),
		table:    &Table{},
	}
	r.scanAt = cfg.Now().Add(r.scanInterval())
	return r
}

func (r *Router) scanInterval() time.Duration { return r.cfg.RefreshInterval / 4 }

// Table returns the current routing table. It is immutable.
func (r *Router) Table() *Table { return r.table }

// Outbox returns the messages to send and forgets them.
func (r *Router) Outbox() []Out {
	o := r.out
	r.out = nil
	return o
}

// Events returns what happened since the last call and forgets it.
func (r *Router) Events() []Event {
	e := r.events
	r.events = nil
	return e
}

// Stats returns the counters.
func (r *Router) Stats() Stats {
	s := r.stats
	s.LSDBSize = len(r.lsdb)
	for _, n := range r.nbrs {
		if n.up {
			s.Neighbours++
		}
	}
	return s
}

// LinkMetric returns the metric the router advertises for its link to nbr.
func (r *Router) LinkMetric(nbr identity.NodeID) (uint32, bool) {
	n := r.nbrs[nbr]
	if n == nil || !n.up {
		return 0, false
	}
	return n.metric, true
}

// Seq returns the sequence number of our latest advert (0 before the first).
func (r *Router) Seq() uint64 { return r.seq }

func clampMetric(m uint32) uint32 {
	return max(1, min(m, MaxMetric))
}

func (r *Router) neighbour(id identity.NodeID) *neighbour {
	if n := r.nbrs[id]; n != nil {
		return n
	}
	n := &neighbour{id: id, tokens: r.burst(), tokensAt: r.cfg.Now(), strikes: strikeBurst}
	r.nbrs[id] = n
	i, _ := slices.BinarySearchFunc(r.nbrList, id, func(a *neighbour, b identity.NodeID) int { return cmpID(&a.id, &b) })
	r.nbrList = slices.Insert(r.nbrList, i, n)
	return n
}

func (r *Router) dropNeighbour(id identity.NodeID) {
	n := r.nbrs[id]
	if n == nil {
		return
	}
	n.gone = true
	delete(r.nbrs, id)
	if i, ok := slices.BinarySearchFunc(r.nbrList, id, func(a *neighbour, b identity.NodeID) int { return cmpID(&a.id, &b) }); ok {
		r.nbrList = slices.Delete(r.nbrList, i, i+1)
	}
}

// LinkUp reports a live link to nbr with the given metric (see Metric). The
// router re-originates its advert (rate limited) and starts a database sync
// with nbr by sending it a summary.
func (r *Router) LinkUp(nbr identity.NodeID, metric uint32) {
	if nbr == r.cfg.Self {
		return
	}
	now := r.cfg.Now()
	n := r.neighbour(nbr)
	metric = clampMetric(metric)
	if n.up {
		r.SetMetric(nbr, metric)
		return
	}
	n.up, n.metric, n.measured, n.metricAt = true, metric, metric, now
	r.sendSummary(n)
	n.syncAt = now.Add(r.jitter(r.cfg.SyncInterval, n.syncs^idSalt(nbr)))
	r.linksChanged(now)
}

// LinkDown reports that the link to nbr is dead. Routes through nbr switch to
// their alternates at once, in a new Table, before SPF runs.
func (r *Router) LinkDown(nbr identity.NodeID) {
	n := r.nbrs[nbr]
	if n == nil || !n.up {
		return
	}
	now := r.cfg.Now()
	r.dropNeighbour(nbr)
	r.version++
	r.table = r.table.withoutNeighbour(nbr, r.version)
	r.linksChanged(now)
}

// SetMetric updates the measured metric of the link to nbr. The advertised
// metric follows only when the change exceeds Config.Hysteresis, and at most
// once per Config.MetricHold unless it halves or doubles, so noise in
// measurements does not make routes flap or adverts flood.
func (r *Router) SetMetric(nbr identity.NodeID, metric uint32) {
	n := r.nbrs[nbr]
	if n == nil || !n.up {
		return
	}
	metric = clampMetric(metric)
	n.measured = metric
	m, a, h := float64(metric), float64(n.metric), r.cfg.Hysteresis
	if m <= a*(1+h) && m*(1+h) >= a {
		return
	}
	now := r.cfg.Now()
	if now.Sub(n.metricAt) < r.cfg.MetricHold && m < 2*a && 2*m > a {
		return
	}
	n.metric, n.metricAt = metric, now
	r.linksChanged(now)
}

func (r *Router) linksChanged(now time.Time) {
	r.scheduleSPF(now)
	if r.origPending {
		return
	}
	at := r.lastOrig.Add(r.cfg.MinOriginateInterval)
	if r.lastOrig.IsZero() || !at.After(now) {
		r.originate(now)
		return
	}
	r.origPending, r.origAt = true, at
}

// originate signs and floods a new advert of our live links.
func (r *Router) originate(now time.Time) {
	links := make([]Link, 0, len(r.nbrList))
	for _, n := range r.nbrList {
		if n.up {
			links = append(links, Link{Neighbour: n.id, Metric: n.metric})
		}
	}
	if len(links) > MaxLinks {
		slices.SortStableFunc(links, func(a, b Link) int { return cmp.Compare(a.Metric, b.Metric) })
		links = links[:MaxLinks]
		slices.SortFunc(links, func(a, b Link) int { return cmpID(&a.Neighbour, &b.Neighbour) })
	}
	seq := max(r.seq+1, uint64(max(now.UnixMicro(), 1)))
	body, err := EncodeLSABody(LSA{Origin: r.cfg.Self, Seq: seq, Links: links})
	if err != nil {
		panic("route: own advert does not encode: " + err.Error()) // links are built sorted and valid above
	}
	sig := r.cfg.Sign(SignLabel, body)
	if len(sig) != identity.SignatureSize {
		panic(fmt.Sprintf("route: Config.Sign returned %d bytes, want %d", len(sig), identity.SignatureSize))
	}
	raw := lsaView(append(body, sig...))
	r.seq, r.lastOrig, r.origPending = seq, now, false
	r.refreshAt = now.Add(r.jitter(r.cfg.RefreshInterval, seq))
	old := r.lsdb[r.cfg.Self]
	e := newEntry(raw, now)
	r.lsdb[r.cfg.Self] = e
	r.stats.Originated++
	if old == nil {
		r.originsVer++
	}
	if old == nil || !bytes.Equal(old.raw.links(), raw.links()) {
		r.scheduleSPF(now)
	}
	r.flood(e, nil, now)
}

// flood sends an advert to every live neighbour but except, reliably: each
// copy is retransmitted until acknowledged.
func (r *Router) flood(e *lsdbEntry, except *neighbour, now time.Time) {
	for _, n := range r.nbrList {
		if n.up && n != except {
			r.sendLSA(n, e, now)
		}
	}
}

func (r *Router) sendLSA(n *neighbour, e *lsdbEntry, now time.Time) {
	due := now.Add(r.cfg.RxmtInterval).UnixNano()
	found := false
	for i := range e.waiting {
		if e.waiting[i].n == n {
			e.waiting[i].due, e.waiting[i].tries, found = due, 0, true
			break
		}
	}
	if !found {
		e.waiting = append(e.waiting, waitRec{n: n, due: due})
	}
	if r.rxmtAt.IsZero() || due < r.rxmtAt.UnixNano() {
		r.rxmtAt = time.Unix(0, due)
	}
	r.send(n.id, e.raw)
}

func (r *Router) send(to identity.NodeID, msg []byte) {
	r.out = append(r.out, Out{To: to, Msg: msg})
	r.stats.SentMsgs++
	r.stats.SentBytes += uint64(len(msg))
}

func (r *Router) event(e Event) {
	if len(r.events) >= maxEvents {
		r.stats.EventsDropped++
		return
	}
	r.events = append(r.events, e)
}

// Receive handles a routing message from the authenticated neighbour from.
// The router keeps msg (adverts are stored and flooded as received): the
// caller must not modify it afterwards. It returns an error, wrapping one of
// the package's errors, for a message it rejects; duplicates and stale
// copies, normal in flooding, are not errors.
func (r *Router) Receive(from identity.NodeID, msg []byte) error {
	if from == r.cfg.Self {
		return fmt.Errorf("route: message from ourselves: %w", ErrMalformed)
	}
	now := r.cfg.Now()
	n := r.neighbour(from)
	n.heard = now
	if !r.take(n, now) {
		return fmt.Errorf("route: message from %s: %w", from.Short(), ErrRateLimited)
	}
	var err error
	switch {
	case len(msg) == 0:
		err = ErrShort
	case msg[0] == TypeLSA:
		return r.receiveLSA(n, msg, now)
	case msg[0] == TypeAck:
		var es []Entry
		if es, err = DecodeAck(msg); err == nil {
			for _, e := range es {
				r.acked(n, r.lsdb[e.Origin], e.Seq)
			}
			return nil
		}
	case msg[0] == TypeSummary:
		var s Summary
		if s, err = DecodeSummary(msg); err == nil {
			r.receiveSummary(n, s, now)
			return nil
		}
	default:
		err = ErrType
	}
	r.stats.Malformed++
	r.strike(n)
	r.event(Event{Kind: EventMalformed, At: now, Neighbour: from, Err: err})
	return fmt.Errorf("route: message from %s: %w", from.Short(), err)
}

// acked notes that n holds e's advert or a newer one. It reports whether we
// were waiting for n to acknowledge it.
func (r *Router) acked(n *neighbour, e *lsdbEntry, seq uint64) bool {
	if e == nil || e.seq > seq {
		return false
	}
	for i := range e.waiting {
		if e.waiting[i].n == n {
			last := len(e.waiting) - 1
			e.waiting[i] = e.waiting[last]
			e.waiting[last] = waitRec{}
			e.waiting = e.waiting[:last]
			return true
		}
	}
	return false
}

func (r *Router) ack(n *neighbour, origin identity.NodeID, seq uint64, now time.Time) {
	if len(n.acks) == 0 {
		n.ackAt = now.Add(r.cfg.AckDelay)
	}
	n.acks = append(n.acks, Entry{Origin: origin, Seq: seq})
}

func (r *Router) receiveLSA(n *neighbour, msg []byte, now time.Time) error {
	r.stats.Received++
	v, err := parseLSA(msg)
	if err != nil {
		r.stats.Malformed++
		r.strike(n)
		r.event(Event{Kind: EventMalformed, At: now, Neighbour: n.id, Err: err})
		return fmt.Errorf("route: advert from %s: %w", n.id.Short(), err)
	}
	origin, seq := v.origin(), v.seq()
	cur := r.lsdb[origin]
	crossed := r.acked(n, cur, seq) // the neighbour has this one: stop sending it ours
	if origin == r.cfg.Self && cur != nil && (seq > cur.seq || (seq == cur.seq && !bytes.Equal(msg, cur.raw))) {
		return r.receiveOwn(n, v, now)
	}
	if cur != nil {
		switch {
		case seq == cur.seq && bytes.Equal(msg, cur.raw):
			// If our copy to n is still unacknowledged, the two crossed:
			// each is the other's acknowledgement. Otherwise n may be
			// retransmitting because our ack was lost.
			r.stats.Duplicate++
			if !crossed {
				r.ack(n, origin, seq, now)
			}
			return nil
		case seq < cur.seq || (seq == cur.seq && bytes.Compare(msg, cur.raw) < 0):
			// Older than ours (a crossing retransmission, or a replay): the
			// neighbour needs our copy, which also acknowledges its one.
			r.stats.Old++
			r.sendLSA(n, cur, now)
			return nil
		}
		// Same sequence, different bytes, and ours compares lower: the origin
		// signed two adverts with one number (a restart with the same clock).
		// Every router keeps the higher one, so all converge on it.
	} else if origin == r.cfg.Self {
		return r.receiveOwn(n, v, now)
	}
	if t, ok := r.tombs[origin]; ok && seq <= t.seq {
		r.stats.Old++
		r.ack(n, origin, seq, now)
		return nil
	}
	if lim := r.cfg.MinOriginateInterval / 4; cur != nil && now.Sub(cur.arrived) < lim {
		// Sooner after the last one than the origin may originate: it
		// waits, unacknowledged, until lim after the last (only the newest
		// waiting advert per origin is kept). An honest origin's adverts
		// can arrive this close (an old one by database sync, then its
		// successor by flooding); a runaway origin's cost at most one
		// verification per lim.
		if d := r.deferred[origin]; d == nil || seq > d.raw.seq() {
			r.deferred[origin] = &deferredLSA{raw: v, n: n, at: cur.arrived.Add(lim)}
		}
		r.stats.Deferred++
		return nil
	}
	if err := r.verify(n, v, now); err != nil {
		return err
	}
	r.stats.Accepted++
	r.ack(n, origin, seq, now)
	if cur == nil || !bytes.Equal(cur.raw.links(), v.links()) {
		r.scheduleSPF(now)
	}
	e := newEntry(v, now)
	e.expires = now.Add(r.cfg.MaxAge)
	r.lsdb[origin] = e
	if cur == nil {
		r.originsVer++
	}
	delete(r.tombs, origin)
	r.flood(e, n, now)
	return nil
}

func (r *Router) verify(n *neighbour, v lsaView, now time.Time) error {
	origin, seq := v.origin(), v.seq()
	if n.strikes < 1 {
		r.stats.RateLimited++
		return fmt.Errorf("route: advert %s/%d from %s after its forgeries: %w", origin.Short(), seq, n.id.Short(), ErrRateLimited)
	}
	err := r.cfg.Verify(origin, SignLabel, v.body(), v.sig())
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrUnknownOrigin) {
		r.stats.UnknownOrigin++
		return fmt.Errorf("route: advert %s/%d from %s: %w", origin.Short(), seq, n.id.Short(), err)
	}
	r.stats.Forged++
	r.strike(n)
	err = fmt.Errorf("%w: %w", ErrForged, err)
	r.event(Event{Kind: EventForged, At: now, Neighbour: n.id, Origin: origin, Seq: seq, Err: err})
	return fmt.Errorf("route: advert %s/%d from %s: %w", origin.Short(), seq, n.id.Short(), err)
}

// receiveOwn handles a valid-looking advert of our own that is newer than,
// or conflicts with, our current one: an earlier incarnation of this node. We
// jump our sequence past it and re-originate, so the network forgets it.
func (r *Router) receiveOwn(n *neighbour, v lsaView, now time.Time) error {
	if err := r.verify(n, v, now); err != nil {
		return err
	}
	seq := v.seq()
	r.ack(n, r.cfg.Self, seq, now)
	r.seq = max(r.seq, seq)
	r.event(Event{Kind: EventSelfSeq, At: now, Neighbour: n.id, Origin: r.cfg.Self, Seq: seq})
	if !r.origPending {
		r.origPending = true
		r.origAt = r.lastOrig.Add(r.cfg.MinOriginateInterval)
		if r.lastOrig.IsZero() || !r.origAt.After(now) {
			r.originate(now)
		}
	}
	return nil
}

// burst and rate of a neighbour's token bucket grow with the database, since
// a full sync legitimately sends every advert we know.
func (r *Router) burst() float64 { return float64(r.cfg.FloodBurst + 8*len(r.lsdb)) }
func (r *Router) rate() float64  { return r.cfg.FloodRate + 2*float64(len(r.lsdb)) }

func (r *Router) strike(n *neighbour) { n.strikes = max(0, n.strikes-1) }

// take charges one message to the neighbour's bucket. The strikes refill
// from the same timestamp, so it is updated here only.
func (r *Router) take(n *neighbour, now time.Time) bool {
	if dt := now.Sub(n.tokensAt); dt > 0 {
		n.tokens = min(r.burst(), n.tokens+dt.Seconds()*r.rate())
		n.strikes = min(strikeBurst, n.strikes+dt.Seconds()/strikeRefill.Seconds())
		n.tokensAt = now
	}
	if n.tokens >= 1 {
		n.tokens--
		return true
	}
	r.stats.RateLimited++
	if n.reported.IsZero() || now.Sub(n.reported) >= floodReportInterval {
		n.reported = now
		r.event(Event{Kind: EventFlood, At: now, Neighbour: n.id, Err: ErrRateLimited})
	}
	return false
}

// receiveSummary pushes to the neighbour every advert in the summary's range
// that it lacks or holds an older copy of, and pulls those it lists that we
// lack: after PullDelay, whichever are still missing are asked for with our
// own summary of their range, to which the neighbour answers with the same
// push. So one summary, in either direction, brings both ends level, whatever
// each end's view of the link when it was sent or handled: the two ends of a
// link come up at different moments, and an advert that reaches one end
// before its link is up is not flooded over it.
func (r *Router) receiveSummary(n *neighbour, s Summary, now time.Time) {
	theirs := make(map[identity.NodeID]uint64, len(s.Entries))
	for _, e := range s.Entries {
		theirs[e.Origin] = e.Seq
		if !r.lacks(e.Origin, e.Seq) {
			continue
		}
		if n.want == nil {
			n.want = make(map[identity.NodeID]uint64)
		}
		if w, ok := n.want[e.Origin]; ok || len(n.want) < maxWant {
			n.want[e.Origin] = max(w, e.Seq)
		}
	}
	if len(n.want) > 0 && n.pullAt.IsZero() {
		n.pullAt, n.pullTries = now.Add(r.cfg.PullDelay), 0
	}
	var push []identity.NodeID
	for id, e := range r.lsdb {
		if cmpID(&id, &s.From) >= 0 && cmpID(&id, &s.To) <= 0 && theirs[id] < e.seq {
			push = append(push, id)
		}
	}
	slices.SortFunc(push, func(a, b identity.NodeID) int { return cmpID(&a, &b) })
	for _, id := range push {
		r.sendLSA(n, r.lsdb[id], now)
	}
}

// lacks reports whether an advert of origin with sequence seq would be new
// to us: newer than the one we hold, than one waiting in the arrival limit,
// and than the tombstone of an aged-out one.
func (r *Router) lacks(origin identity.NodeID, seq uint64) bool {
	if e := r.lsdb[origin]; e != nil {
		return seq > e.seq
	}
	if d := r.deferred[origin]; d != nil && d.raw.seq() >= seq {
		return false
	}
	if t, ok := r.tombs[origin]; ok && seq <= t.seq {
		return false
	}
	return true
}

// pull asks the neighbour for the adverts its summaries listed that are
// still missing here, by sending our summary of their range; it gives up
// after maxPullTries.
func (r *Router) pull(n *neighbour, now time.Time) {
	var lo, hi identity.NodeID
	first := true
	for id, seq := range n.want {
		if !r.lacks(id, seq) {
			delete(n.want, id)
			continue
		}
		if first || cmpID(&id, &lo) < 0 {
			lo = id
		}
		if first || cmpID(&id, &hi) > 0 {
			hi = id
		}
		first = false
	}
	if len(n.want) == 0 || n.pullTries >= maxPullTries {
		n.want, n.pullAt, n.pullTries = nil, time.Time{}, 0
		return
	}
	n.pullTries++
	n.pullAt = now.Add(r.cfg.RxmtInterval)
	r.sendSummaryRange(n, lo, hi)
}

// sendSummary sends our whole database as summaries covering the ID space
// without gaps, MaxEntries per message.
func (r *Router) sendSummary(n *neighbour) {
	var lo, hi identity.NodeID
	for i := range hi {
		hi[i] = 0xff
	}
	r.sendSummaryRange(n, lo, hi)
}

// sendSummaryRange sends our adverts in [lo, hi] as summaries covering that
// range without gaps, MaxEntries per message.
func (r *Router) sendSummaryRange(n *neighbour, lo, hi identity.NodeID) {
	es := make([]Entry, 0, len(r.lsdb))
	for id, e := range r.lsdb {
		if cmpID(&id, &lo) >= 0 && cmpID(&id, &hi) <= 0 {
			es = append(es, Entry{Origin: id, Seq: e.seq})
		}
	}
	slices.SortFunc(es, func(a, b Entry) int { return cmpID(&a.Origin, &b.Origin) })
	from := lo
	for {
		k := min(len(es), MaxEntries)
		s := Summary{From: from, Entries: es[:k]}
		if k == len(es) {
			s.To = hi
		} else {
			s.To = es[k].Origin
			decID(&s.To)
			from = es[k].Origin
		}
		b, err := EncodeSummary(s)
		if err != nil {
			panic("route: own summary does not encode: " + err.Error())
		}
		r.send(n.id, b)
		es = es[k:]
		if len(es) == 0 {
			return
		}
	}
}

func decID(id *identity.NodeID) {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]--
		if id[i] != 0xff {
			return
		}
	}
}

func (r *Router) scheduleSPF(now time.Time) {
	if !r.spfAt.IsZero() {
		return
	}
	if r.lastSPF.IsZero() || now.Sub(r.lastSPF) > 2*r.cfg.SPFMaxHold {
		r.spfHold = 0
	}
	at := now.Add(r.cfg.SPFDelay)
	if h := r.lastSPF.Add(r.spfHold); r.spfHold > 0 && h.After(at) {
		at = h
	}
	r.spfAt = at
}

func (r *Router) runSPF(now time.Time) {
	r.spfAt = time.Time{}
	r.lastSPF = now
	r.spfHold = min(max(2*r.spfHold, r.cfg.SPFHold), r.cfg.SPFMaxHold)
	r.stats.SPFRuns++
	g := r.buildGraph()
	r.spf.compute(g, g.idx[r.cfg.Self])
	if slices.Equal(r.spf.dst, r.table.dst) && slices.Equal(r.spf.routes, r.table.routes) {
		return
	}
	r.version++
	r.table = &Table{version: r.version, dst: slices.Clone(r.spf.dst), routes: slices.Clone(r.spf.routes)}
}

// NextDeadline returns when Tick must next be called.
func (r *Router) NextDeadline() time.Time {
	t := r.scanAt
	early := func(x time.Time) {
		if !x.IsZero() && x.Before(t) {
			t = x
		}
	}
	if r.origPending {
		early(r.origAt)
	}
	if r.seq != 0 {
		early(r.refreshAt)
	}
	early(r.spfAt)
	early(r.rxmtAt)
	for _, d := range r.deferred {
		early(d.at)
	}
	for _, n := range r.nbrList {
		if len(n.acks) > 0 {
			early(n.ackAt)
		}
		if n.up {
			early(n.syncAt)
		}
		early(n.pullAt)
	}
	return t
}

// Tick runs whatever timers are due: coalesced and periodic origination, SPF,
// acknowledgements, retransmissions, database summaries and aging.
func (r *Router) Tick() {
	now := r.cfg.Now()
	if (r.origPending && !now.Before(r.origAt)) || (r.seq != 0 && !now.Before(r.refreshAt)) {
		r.originate(now)
	}
	for _, n := range r.nbrList {
		if len(n.acks) > 0 && !now.Before(n.ackAt) {
			r.flushAcks(n)
		}
		if n.up && !now.Before(n.syncAt) {
			n.syncs++
			n.syncAt = now.Add(r.jitter(r.cfg.SyncInterval, n.syncs^idSalt(n.id)))
			r.sendSummary(n)
		}
		if !n.pullAt.IsZero() && !now.Before(n.pullAt) {
			r.pull(n, now)
		}
	}
	if !r.rxmtAt.IsZero() && !now.Before(r.rxmtAt) {
		r.retransmit(now)
	}
	if len(r.deferred) > 0 {
		var due []identity.NodeID
		for id, d := range r.deferred {
			if !now.Before(d.at) {
				due = append(due, id)
			}
		}
		slices.SortFunc(due, func(a, b identity.NodeID) int { return cmpID(&a, &b) })
		for _, id := range due {
			d := r.deferred[id]
			delete(r.deferred, id)
			r.stats.Received-- // counted when it first arrived
			_ = r.receiveLSA(d.n, d.raw, now)
		}
	}
	if !now.Before(r.scanAt) {
		r.scan(now)
	}
	if !r.spfAt.IsZero() && !now.Before(r.spfAt) {
		r.runSPF(now)
	}
}

func (r *Router) flushAcks(n *neighbour) {
	es := n.acks
	n.acks = nil
	slices.SortFunc(es, func(a, b Entry) int {
		if c := cmpID(&a.Origin, &b.Origin); c != 0 {
			return c
		}
		switch { // highest seq first, so Compact keeps it
		case a.Seq > b.Seq:
			return -1
		case a.Seq < b.Seq:
			return 1
		}
		return 0
	})
	es = slices.CompactFunc(es, func(a, b Entry) bool { return a.Origin == b.Origin })
	for len(es) > 0 {
		k := min(len(es), MaxEntries)
		b, err := EncodeAck(es[:k])
		if err != nil {
			panic("route: own ack does not encode: " + err.Error())
		}
		r.send(n.id, b)
		es = es[k:]
	}
}

// retransmit resends every advert a neighbour has not acknowledged within
// RxmtInterval (and those nearly due, to batch them), giving up after
// maxRetransmitTries (4 for a neighbour whose link is not up): the periodic
// database sync repairs what retransmission gives up on.
func (r *Router) retransmit(now time.Time) {
	horizon := now.Add(r.cfg.RxmtInterval / 4).UnixNano()
	var ids []identity.NodeID
	for id, e := range r.lsdb {
		if len(e.waiting) > 0 {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b identity.NodeID) int { return cmpID(&a, &b) })
	r.rxmtAt = time.Time{}
	for _, id := range ids {
		e := r.lsdb[id]
		keep := e.waiting[:0]
		for _, w := range e.waiting {
			if w.n.gone {
				continue
			}
			if w.due <= horizon {
				if w.tries >= maxRetransmitTries || (!w.n.up && w.tries >= 4) {
					continue
				}
				w.tries++
				w.due = now.Add(r.cfg.RxmtInterval).UnixNano()
				r.stats.Retransmits++
				r.send(w.n.id, e.raw)
			}
			keep = append(keep, w)
			if r.rxmtAt.IsZero() || w.due < r.rxmtAt.UnixNano() {
				r.rxmtAt = time.Unix(0, w.due)
			}
		}
		clear(e.waiting[len(keep):])
		e.waiting = keep
	}
}

// scan ages out adverts not refreshed within MaxAge (remembering their
// sequence numbers for another MaxAge, so a late copy is not taken as new),
// drops old tombstones and forgets idle neighbours whose links are down.
func (r *Router) scan(now time.Time) {
	r.scanAt = now.Add(r.scanInterval())
	for id, e := range r.lsdb {
		if !e.expires.IsZero() && !now.Before(e.expires) {
			delete(r.lsdb, id)
			r.originsVer++
			r.tombs[id] = tombstone{seq: e.seq, until: now.Add(r.cfg.MaxAge)}
			r.stats.Expired++
			r.scheduleSPF(now)
		}
	}
	for id, t := range r.tombs {
		if !now.Before(t.until) {
			delete(r.tombs, id)
		}
	}
	for _, n := range slices.Clone(r.nbrList) {
		if !n.up && len(n.acks) == 0 && now.Sub(n.heard) > r.cfg.SyncInterval {
			r.dropNeighbour(n.id)
		}
	}
}

// jitter spreads periodic timers over ±10% of d, deterministically from our
// ID and salt, so refreshes and syncs of many routers do not synchronize.
func (r *Router) jitter(d time.Duration, salt uint64) time.Duration {
	x := splitmix(idSalt(r.cfg.Self) ^ salt)
	return d - d/10 + time.Duration(x%uint64(d/5+1))
}

func idSalt(id identity.NodeID) uint64 {
	return binary.LittleEndian.Uint64(id[:8]) ^ binary.LittleEndian.Uint64(id[8:])
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
