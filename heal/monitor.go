package heal

import (
	"maps"
	"math"
	"slices"
	"time"
)

// Limits on caller-supplied strings, so that memory stays bounded whatever the
// node feeds in. Node IDs are 32 hex digits; anything far longer is not one.
const (
	maxIDLen          = 256
	maxTransportLen   = 64
	maxDropReasons    = 16
	maxDropReasonLen  = 64
	counterBuckets    = 12
	otherDropReason   = "other"
	dropsMADFloor     = 1   // drops/s
	dropsRelFloor     = 0.1 // of the median rate
	dropsMinRiseRatio = 1   // the rate must at least double
)

// Counter indices in peerState.
const (
	cHandshake = iota
	cBadMAC
	cBadAEAD
	cReplays
	cForged
	cFlooded
	nCounters
)

var counterMetric = [nCounters]string{"handshake_failures", "bad_mac", "bad_aead", "replays", "forged_adverts", "flooded_adverts"}

// series is one link metric: its baseline of normal values and its latest
// samples.
type series struct {
	base      Baseline
	recent    ring
	rejecting bool      // the latest samples were kept out of the baseline
	since     time.Time // first sample of the current run kept out
}

func (s *series) init(c *Config) {
	s.base.init(c.Window)
	s.recent.size = c.Recent
}

// add records a sample. An anomalous sample is kept out of the baseline, so a
// lasting incident does not become the new normal within half a window; a
// shift that lasts AdaptAfter is accepted as the new normal (a route change
// that made a path longer for good).
func (s *series) add(x float64, t time.Time, mc MetricConfig, c *Config) {
	s.recent.add(x)
	if s.base.Len() >= c.MinSamples {
		med, mad := s.base.Stats()
		if _, bad := anomaly(x, med, mad, mc, c.ZThreshold); bad {
			if !s.rejecting {
				s.rejecting, s.since = true, t
			}
			if t.Sub(s.since) < c.AdaptAfter {
				return
			}
		} else {
			s.rejecting = false
		}
	}
	s.base.Add(x)
}

// eval tests the median of the recent samples against the baseline. warm is
// false while the baseline has fewer than MinSamples values; then no relative
// verdict is given.
func (s *series) eval(mc MetricConfig, c *Config) (e Evidence, bad, warm bool) {
	if len(s.recent.buf) == 0 {
		return Evidence{}, false, false
	}
	cur := s.recent.median()
	e = Evidence{Value: finite(cur)}
	if s.base.Len() < c.MinSamples {
		return e, false, false
	}
	med, mad := s.base.Stats()
	z, bad := anomaly(cur, med, mad, mc, c.ZThreshold)
	e.Baseline, e.MAD, e.Z = finite(med), finite(mad), z
	return e, bad, true
}

// linkState is one link: a neighbour over one transport.
type linkState struct {
	peer, transport string
	seen            time.Time
	up              bool
	downSince       time.Time
	rtt, jitter     series
	loss            series
}

type linkKey struct{ peer, transport string }

// bucket counts counter increments in one slice of the counter window.
type bucket struct {
	idx int64 // bucket number: time in ms divided by the bucket width
	set bool
	c   [nCounters]uint64
}

// peerState is one peer's failure counters.
type peerState struct {
	seen    time.Time
	last    [nCounters]uint64
	buckets [counterBuckets]bucket
}

type pathState struct {
	reachable bool
	via       string
	seen      time.Time
}

// nodeState is this node's load.
type nodeState struct {
	seen       time.Time
	cpu, queue ring
	drops      map[string]uint64 // last cumulative count per reason
	dropsAt    time.Time
	hasDrops   bool
	rate       series // drops per second
	top        string // reason with the most drops in the last interval
}

// Monitor is the M of MAPE-K: it keeps bounded windows of what the node
// observed. Its memory is bounded by Config.MaxLinks, MaxPeers, MaxPaths and
// Window, whatever it is fed; when full it forgets the entry heard from
// longest ago. Not safe for concurrent use.
type Monitor struct {
	cfg       Config
	links     map[linkKey]*linkState
	peers     map[string]*peerState
	paths     map[string]*pathState
	node      nodeState
	forgotten map[string]bool // peers dropped by Forget since the last Prune
}

// NewMonitor returns an empty monitor.
func NewMonitor(cfg Config) *Monitor {
	c := cfg.withDefaults()
	m := &Monitor{
		cfg:       c,
		links:     make(map[linkKey]*linkState),
		peers:     make(map[string]*peerState),
		paths:     make(map[string]*pathState),
		forgotten: make(map[string]bool),
	}
	m.resetNode()
	return m
}

func (m *Monitor) resetNode() {
	m.node = nodeState{drops: make(map[string]uint64)}
	m.node.cpu.size = m.cfg.Recent
	m.node.queue.size = m.cfg.Recent
	m.node.rate.init(&m.cfg)
}

// Observe records one observation. Forget applies first, so an observation
// that forgets a peer and reports it again starts it afresh.
func (m *Monitor) Observe(o Observation) {
	for _, id := range o.Forget {
		m.forget(id)
	}
	for _, s := range o.Links {
		m.observeLink(o.Time, s)
	}
	for _, p := range o.Peers {
		m.observePeer(o.Time, p)
	}
	for _, p := range o.Paths {
		m.observePath(o.Time, p)
	}
	if o.Node != nil {
		m.observeNode(o.Time, o.Node)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (m *Monitor) observeLink(t time.Time, s LinkSample) {
	if s.Peer == "" || len(s.Peer) > maxIDLen || len(s.Transport) > maxTransportLen {
		return
	}
	k := linkKey{s.Peer, s.Transport}
	l := m.links[k]
	if l == nil {
		if len(m.links) >= m.cfg.MaxLinks {
			if k, ok := evictOldest(m.links, func(l *linkState) time.Time { return l.seen }); ok {
				m.remember(k.peer) // its incident must not look recovered
			}
		}
		l = &linkState{peer: s.Peer, transport: s.Transport, seen: t, up: true}
		l.rtt.init(&m.cfg)
		l.jitter.init(&m.cfg)
		l.loss.init(&m.cfg)
		m.links[k] = l
	}
	l.seen = later(l.seen, t)
	if !s.Up {
		if l.up || l.downSince.IsZero() {
			l.downSince = t
		}
		l.up = false
		return
	}
	l.up = true
	l.downSince = time.Time{}
	l.rtt.add(ms(s.RTT), t, m.cfg.RTT, &m.cfg)
	l.jitter.add(ms(s.Jitter), t, m.cfg.Jitter, &m.cfg)
	if loss := s.Loss; !math.IsNaN(loss) {
		l.loss.add(min(max(loss, 0), 1), t, m.cfg.Loss, &m.cfg)
	}
}

// ms converts a duration to milliseconds; negative durations are zero.
func ms(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return float64(d) / float64(time.Millisecond)
}

func (m *Monitor) bucketWidth() int64 {
	return max(m.cfg.CounterWindow.Milliseconds()/counterBuckets, 1)
}

// bucketIdx is the counter bucket holding time t.
func (m *Monitor) bucketIdx(t time.Time) int64 {
	w := m.bucketWidth()
	ms := t.UnixMilli()
	q := ms / w
	if ms%w != 0 && ms < 0 {
		q--
	}
	return q
}

func (m *Monitor) observePeer(t time.Time, c PeerCounters) {
	if c.Peer == "" || len(c.Peer) > maxIDLen {
		return
	}
	p := m.peers[c.Peer]
	if p == nil {
		if len(m.peers) >= m.cfg.MaxPeers {
			if id, ok := evictOldest(m.peers, func(p *peerState) time.Time { return p.seen }); ok {
				m.remember(id)
			}
		}
		p = &peerState{seen: t}
		m.peers[c.Peer] = p
	}
	p.seen = later(p.seen, t)
	cur := [nCounters]uint64{c.HandshakeFailures, c.BadMAC, c.BadAEAD, c.Replays, c.ForgedAdverts, c.FloodedAdverts}
	var d [nCounters]uint64
	for i := range cur {
		if cur[i] >= p.last[i] {
			d[i] = cur[i] - p.last[i]
		} else {
			d[i] = cur[i] // the counter was reset
		}
		p.last[i] = cur[i]
	}
	idx := m.bucketIdx(t)
	b := &p.buckets[mod(idx, counterBuckets)]
	switch {
	case !b.set || b.idx < idx:
		*b = bucket{idx: idx, set: true}
	case b.idx > idx:
		return // older than the window: the increments are too old to matter
	}
	for i := range d {
		b.c[i] = satAdd(b.c[i], d[i])
	}
}

func mod(a, n int64) int64 {
	r := a % n
	if r < 0 {
		r += n
	}
	return r
}

func satAdd(a, b uint64) uint64 {
	if a+b < a {
		return math.MaxUint64
	}
	return a + b
}

// counts sums a peer's counter increments in the counter window ending at now,
// counting only buckets after the one holding after (zero time: all).
func (m *Monitor) counts(p *peerState, now, after time.Time) [nCounters]uint64 {
	var s [nCounters]uint64
	hi := m.bucketIdx(now)
	lo := hi - counterBuckets
	if !after.IsZero() {
		lo = max(lo, m.bucketIdx(after))
	}
	for i := range p.buckets {
		b := &p.buckets[i]
		if b.set && b.idx > lo && b.idx <= hi {
			for j := range s {
				s[j] = satAdd(s[j], b.c[j])
			}
		}
	}
	return s
}

func (m *Monitor) observePath(t time.Time, p PathSample) {
	if p.Dest == "" || len(p.Dest) > maxIDLen || len(p.Via) > maxIDLen {
		return
	}
	s := m.paths[p.Dest]
	if s == nil {
		if len(m.paths) >= m.cfg.MaxPaths {
			evictOldest(m.paths, func(p *pathState) time.Time { return p.seen })
		}
		s = &pathState{}
		m.paths[p.Dest] = s
	}
	s.seen = later(s.seen, t)
	s.reachable = p.Reachable
	s.via = p.Via
	if !p.Reachable {
		s.via = ""
	}
}

func (m *Monitor) observeNode(t time.Time, s *NodeSample) {
	n := &m.node
	n.seen = later(n.seen, t)
	if !math.IsNaN(s.CPU) {
		n.cpu.add(min(max(s.CPU, 0), 1))
	}
	if !math.IsNaN(s.Queue) {
		n.queue.add(min(max(s.Queue, 0), 1))
	}
	if s.Drops == nil {
		return
	}
	// Keep at most maxDropReasons reasons: the first in sorted order (so the
	// choice is deterministic) and "other" for the rest.
	cur := make(map[string]uint64, min(len(s.Drops), maxDropReasons+1))
	reasons := make([]string, 0, len(s.Drops))
	for r := range s.Drops {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		v := s.Drops[r]
		if len(r) > maxDropReasonLen {
			r = r[:maxDropReasonLen]
		}
		if _, ok := cur[r]; !ok && len(cur) >= maxDropReasons-1 {
			r = otherDropReason
		}
		cur[r] = satAdd(cur[r], v)
	}
	var total, topN uint64
	top := ""
	for _, r := range slices.Sorted(maps.Keys(cur)) {
		v, last := cur[r], n.drops[r]
		d := v
		if v >= last {
			d = v - last
		}
		total = satAdd(total, d)
		if d > topN {
			top, topN = r, d
		}
	}
	if n.hasDrops {
		if dt := t.Sub(n.dropsAt).Seconds(); dt > 0 {
			n.rate.add(float64(total)/dt, t, m.dropsMetric(), &m.cfg)
			if topN > 0 {
				n.top = top
			}
		}
	}
	n.drops, n.dropsAt, n.hasDrops = cur, t, true
}

func (m *Monitor) dropsMetric() MetricConfig {
	return MetricConfig{MADFloor: dropsMADFloor, RelFloor: dropsRelFloor, MinDelta: m.cfg.DropRateMin, MinRatio: dropsMinRiseRatio}
}

// evictOldest removes the entry seen longest ago and returns its key (ties:
// any one). The map is full only under overload, so one O(n) scan per
// insertion beyond the bound is cheap enough.
func evictOldest[K comparable, V any](m map[K]V, seen func(V) time.Time) (K, bool) {
	var victim K
	var oldest time.Time
	first := true
	for k, v := range m {
		if s := seen(v); first || s.Before(oldest) {
			victim, oldest, first = k, s, false
		}
	}
	if !first {
		delete(m, victim)
	}
	return victim, !first
}

// Prune forgets links, peers and paths not reported for Config.StaleAfter (a
// neighbour that vanished without a Forget, a destination that left the mesh)
// and returns the peers this node no longer monitors at all, including those
// forgotten since the last Prune, sorted: their incidents end without a
// verdict.
func (m *Monitor) Prune(now time.Time) (gone []string) {
	stale := func(seen time.Time) bool { return now.Sub(seen) > m.cfg.StaleAfter }
	maybe := m.forgotten
	m.forgotten = make(map[string]bool)
	for k, l := range m.links {
		if stale(l.seen) {
			delete(m.links, k)
			maybe[k.peer] = true
		}
	}
	for id, p := range m.peers {
		if stale(p.seen) {
			delete(m.peers, id)
			maybe[id] = true
		}
	}
	for id, p := range m.paths {
		if stale(p.seen) {
			delete(m.paths, id)
		}
	}
	if !m.node.seen.IsZero() && stale(m.node.seen) {
		m.resetNode()
	}
	for id := range maybe {
		if !m.monitors(id) {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	return gone
}

// forget drops everything known about a peer. Only peers that had state are
// remembered for Prune, which keeps the set bounded.
func (m *Monitor) forget(id string) {
	had := false
	for k := range m.links {
		if k.peer == id {
			delete(m.links, k)
			had = true
		}
	}
	if _, ok := m.peers[id]; ok {
		delete(m.peers, id)
		had = true
	}
	delete(m.paths, id)
	if had {
		m.remember(id)
	}
}

// remember notes a peer whose state was dropped, for Prune to report. The set
// is bounded; beyond the bound (a flood of fresh IDs between two Steps) a
// dropped peer's incident simply resolves as if it recovered.
func (m *Monitor) remember(id string) {
	if len(m.forgotten) < m.cfg.MaxLinks+m.cfg.MaxPeers {
		m.forgotten[id] = true
	}
}

// monitors reports whether the peer still has links or counters.
func (m *Monitor) monitors(id string) bool {
	if _, ok := m.peers[id]; ok {
		return true
	}
	for k := range m.links {
		if k.peer == id {
			return true
		}
	}
	return false
}
