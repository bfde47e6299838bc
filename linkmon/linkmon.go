// Package linkmon measures one link to a direct neighbour and decides whether
// it is alive, as a pure state machine: it builds probes, matches replies, and
// keeps smoothed RTT, RTT variation, jitter and loss over a window. It declares
// the link down after a silence of a few probe intervals (about 170 ms with the
// defaults) and up again after a run of answered probes, longer for a link
// that flaps.
//
// A Link does no I/O, starts no goroutines and reads time only through
// Config.Now. The caller sends what Tick returns, hands received probes and
// replies to Receive (sending back the reply it returns), calls Heard for any
// other authenticated packet from the neighbour, and calls Tick at
// NextDeadline. Events reports the up/down transitions. Not safe for
// concurrent use.
package linkmon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Message types (first byte); they do not collide with route's (0x10-0x12).
const (
	TypeProbe = 0x20
	TypeReply = 0x21
	// MessageSize is the size of a probe and of a reply.
	MessageSize = 16
)

// Decoding errors.
var (
	ErrShort    = errors.New("linkmon: message too short")
	ErrType     = errors.New("linkmon: unknown message type")
	ErrReserved = errors.New("linkmon: reserved field not zero")
	ErrToken    = errors.New("linkmon: reply does not match its probe")
)

// Message is a decoded probe or reply. A reply echoes the probe's Seq and
// Token; the token is unpredictable, so a neighbour can not answer a probe
// before it has received it and so appear closer than it is.
type Message struct {
	Type  byte
	Seq   uint32
	Token uint64
}

// Append encodes m after b: type, 3 reserved zero bytes, seq (u32 LE), token
// (u64 LE).
func (m Message) Append(b []byte) []byte {
	b = append(b, m.Type, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, m.Seq)
	return binary.LittleEndian.AppendUint64(b, m.Token)
}

// Decode strictly decodes a probe or reply. It does not allocate.
func Decode(b []byte) (Message, error) {
	if len(b) != MessageSize {
		if len(b) < MessageSize {
			return Message{}, ErrShort
		}
		return Message{}, fmt.Errorf("linkmon: message of %d bytes: %w", len(b), ErrShort)
	}
	if b[0] != TypeProbe && b[0] != TypeReply {
		return Message{}, ErrType
	}
	if b[1]|b[2]|b[3] != 0 {
		return Message{}, ErrReserved
	}
	return Message{Type: b[0], Seq: binary.LittleEndian.Uint32(b[4:8]), Token: binary.LittleEndian.Uint64(b[8:16])}, nil
}

// State of a link.
type State uint8

// Link states. A link starts Down: it must prove itself with answered probes.
const (
	Down State = iota
	Up
)

func (s State) String() string {
	if s == Up {
		return "up"
	}
	return "down"
}

// Config configures a Link. Zero values take the defaults in brackets.
type Config struct {
	Now func() time.Time // clock [time.Now]
	// Seed keys the probe tokens. The node must draw it from crypto/rand;
	// the simulator derives it from its seed.
	Seed [32]byte

	Interval time.Duration // between probes [50ms]
	Misses   int           // silence of this many intervals (plus a margin) means down [3]
	MinDead  time.Duration // shortest silence that means down [150ms]
	MaxDead  time.Duration // longest; the silence grows with measured loss up to it [1s]
	UpAfter  int           // answered probes in a row to come up [3]
	// DampenDecay: each time a link goes down, the probes needed to come up
	// double (up to 16×); each DampenDecay of staying up halves them again [30s].
	DampenDecay time.Duration
}

func (c *Config) defaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Interval <= 0 {
		c.Interval = 50 * time.Millisecond
	}
	if c.Misses <= 0 {
		c.Misses = 3
	}
	if c.MinDead <= 0 {
		c.MinDead = 150 * time.Millisecond
	}
	if c.MaxDead <= 0 {
		c.MaxDead = time.Second
	}
	if c.UpAfter <= 0 {
		c.UpAfter = 3
	}
	if c.DampenDecay <= 0 {
		c.DampenDecay = 30 * time.Second
	}
}

// Event is a state transition.
type Event struct {
	State State
	At    time.Time
	// Silence is how long nothing had been heard when the link went down.
	Silence time.Duration
}

// Stats describe the link.
type Stats struct {
	State     State
	SRTT      time.Duration // smoothed RTT (RFC 6298)
	RTTVar    time.Duration // RTT mean deviation (RFC 6298)
	Jitter    time.Duration // mean difference of successive RTTs (RFC 3550)
	Loss      float64       // round-trip loss over the last 256 decided probes
	DeadAfter time.Duration // silence that now means down
	LastHeard time.Time
	Sent      uint64
	Answered  uint64
	Late      uint64 // replies after their probe was counted lost
	BadReply  uint64
	Flaps     uint64 // up→down transitions
}

const ring = 128 // outstanding probes remembered: longer than any loss timeout

type probe struct {
	seq      uint32
	token    uint64
	sent     time.Time
	answered bool
	decided  bool
}

// Link monitors one link.
type Link struct {
	cfg       Config
	rng       *rand.ChaCha8
	state     State
	seq       uint32
	decided   uint32 // probes up to this seq are decided
	probes    [ring]probe
	nextProbe time.Time

	srtt, rttvar, jitter, lastRTT time.Duration
	hasRTT                        bool
	win                           lossWindow
	lastHeard                     time.Time
	lastReply                     time.Time
	good                          int
	penalty                       int
	upSince                       time.Time
	events                        []Event
	st                            Stats
}

// New returns a link in state Down whose first probe is due at once.
func New(cfg Config) *Link {
	cfg.defaults()
	l := &Link{cfg: cfg, rng: rand.NewChaCha8(cfg.Seed)}
	l.nextProbe = cfg.Now()
	return l
}

// State returns the current state.
func (l *Link) State() State { return l.state }

// Events returns the transitions since the last call and forgets them.
func (l *Link) Events() []Event {
	e := l.events
	l.events = nil
	return e
}

// Heard records that an authenticated packet came from the neighbour: proof
// of life that keeps an up link up between replies.
func (l *Link) Heard() {
	now := l.cfg.Now()
	if now.After(l.lastHeard) {
		l.lastHeard = now
	}
}

// lossWindow holds the outcomes of the last 256 decided probes (12.8 s at the
// default interval): long enough that 1-2% loss does not read as 0% one
// moment and 5% the next, which would make metrics, and routes, flap.
type lossWindow struct {
	bits        [4]uint64 // bit set: lost
	pos, n, bad int
}

func (w *lossWindow) add(lost bool) {
	word, bit := w.pos/64, uint(w.pos%64)
	if w.n == 256 && w.bits[word]&(1<<bit) != 0 {
		w.bad--
	}
	w.bits[word] &^= 1 << bit
	if lost {
		w.bits[word] |= 1 << bit
		w.bad++
	}
	w.pos = (w.pos + 1) % 256
	w.n = min(w.n+1, 256)
}

// Loss returns the round-trip loss ratio over the last 256 decided probes.
func (l *Link) Loss() float64 {
	if l.win.n == 0 {
		return 0
	}
	return float64(l.win.bad) / float64(l.win.n)
}

// SRTT returns the smoothed RTT (0 before the first reply).
func (l *Link) SRTT() time.Duration { return l.srtt }

// Stats returns the measurements.
func (l *Link) Stats() Stats {
	s := l.st
	s.State, s.SRTT, s.RTTVar, s.Jitter = l.state, l.srtt, l.rttvar, l.jitter
	s.Loss, s.DeadAfter, s.LastHeard = l.Loss(), l.deadAfter(), l.lastHeard
	return s
}

// deadAfter is the silence that means down: Misses intervals plus a margin
// for RTT variation, with more intervals when the link is lossy, so that
// losing that many replies in a row by chance stays below 1 in 100,000.
func (l *Link) deadAfter() time.Duration {
	misses := l.cfg.Misses
	if p := l.Loss(); p > 0 {
		if p >= 0.9 {
			p = 0.9
		}
		misses = max(misses, int(math.Ceil(math.Log(1e-5)/math.Log(p))))
	}
	d := time.Duration(misses)*l.cfg.Interval + max(4*l.rttvar, l.cfg.Interval/5)
	return min(max(d, l.cfg.MinDead), l.cfg.MaxDead)
}

func (l *Link) lossTimeout() time.Duration {
	d := max(time.Second, 3*l.srtt+4*l.rttvar)
	return min(d, (ring/2)*l.cfg.Interval)
}

// NextDeadline returns when Tick must next be called: the next probe, or the
// moment silence would take an up link down.
func (l *Link) NextDeadline() time.Time {
	t := l.nextProbe
	if l.state == Up {
		if d := l.heard().Add(l.deadAfter()); d.Before(t) {
			t = d
		}
	}
	return t
}

func (l *Link) heard() time.Time {
	if l.lastReply.After(l.lastHeard) {
		return l.lastReply
	}
	return l.lastHeard
}

// Tick returns a probe to send if one is due (nil otherwise), counts probes
// that went unanswered too long as lost, and takes the link down after too
// long a silence.
func (l *Link) Tick() []byte {
	now := l.cfg.Now()
	l.decide(now)
	l.checkDead(now)
	if now.Before(l.nextProbe) {
		return nil
	}
	l.seq++
	p := &l.probes[l.seq%ring]
	*p = probe{seq: l.seq, token: l.rng.Uint64(), sent: now}
	l.st.Sent++
	l.nextProbe = now.Add(l.cfg.Interval) // phase follows the caller's timer: links do not probe in lockstep
	return Message{Type: TypeProbe, Seq: p.seq, Token: p.token}.Append(make([]byte, 0, MessageSize))
}

func (l *Link) record(lost bool) { l.win.add(lost) }

func (l *Link) decide(now time.Time) {
	limit := now.Add(-l.lossTimeout())
	for l.decided < l.seq {
		p := &l.probes[(l.decided+1)%ring]
		if p.seq == l.decided+1 && !p.decided {
			if p.sent.After(limit) {
				return
			}
			p.decided = true
			l.record(true)
		}
		l.decided++
	}
}

func (l *Link) checkDead(now time.Time) {
	if l.state != Up {
		return
	}
	if silence := now.Sub(l.heard()); silence >= l.deadAfter() {
		l.state, l.good = Down, 0
		l.penalty = min(l.penalty+1, 5)
		l.st.Flaps++
		l.events = append(l.events, Event{State: Down, At: now, Silence: silence})
	}
}

// needed is how many answered probes in a row bring the link up.
func (l *Link) needed() int {
	if l.penalty <= 1 {
		return l.cfg.UpAfter
	}
	return l.cfg.UpAfter << (l.penalty - 1)
}

// Receive handles a probe or a reply from the neighbour. For a probe it
// returns the reply to send back. Both count as proof of life.
func (l *Link) Receive(b []byte) ([]byte, error) {
	m, err := Decode(b)
	if err != nil {
		return nil, err
	}
	now := l.cfg.Now()
	l.Heard()
	if m.Type == TypeProbe {
		m.Type = TypeReply
		return m.Append(make([]byte, 0, MessageSize)), nil
	}
	p := &l.probes[m.Seq%ring]
	if p.seq != m.Seq || m.Seq == 0 || m.Seq > l.seq {
		l.st.BadReply++
		return nil, fmt.Errorf("linkmon: reply to unknown probe %d: %w", m.Seq, ErrToken)
	}
	if p.token != m.Token {
		l.st.BadReply++
		return nil, fmt.Errorf("linkmon: reply to probe %d: %w", m.Seq, ErrToken)
	}
	if p.answered {
		return nil, nil // duplicate
	}
	p.answered = true
	if p.decided {
		l.st.Late++
		return nil, nil
	}
	p.decided = true
	l.record(false)
	l.st.Answered++
	l.sample(now.Sub(p.sent))
	l.progress(now)
	l.lastReply = now
	return nil, nil
}

func (l *Link) sample(r time.Duration) {
	if !l.hasRTT {
		l.srtt, l.rttvar, l.lastRTT, l.hasRTT = r, r/2, r, true
		return
	}
	d := l.srtt - r
	if d < 0 {
		d = -d
	}
	l.rttvar += (d - l.rttvar) / 4
	l.srtt += (r - l.srtt) / 8
	j := r - l.lastRTT
	if j < 0 {
		j = -j
	}
	l.jitter += (j - l.jitter) / 16
	l.lastRTT = r
}

func (l *Link) progress(now time.Time) {
	if l.state == Up {
		if l.penalty > 0 && now.Sub(l.upSince) >= l.cfg.DampenDecay {
			l.penalty--
			l.upSince = now
		}
		return
	}
	// Replies must come in a run: a gap of more than two intervals restarts it.
	if l.good > 0 && now.Sub(l.lastReply) > 2*l.cfg.Interval+max(4*l.rttvar, l.cfg.Interval/5) {
		l.good = 0
	}
	l.good++
	if l.good >= l.needed() {
		// Probes lost while the link was down measure the outage, not the
		// link: start the loss window afresh.
		l.win, l.decided = lossWindow{}, l.seq
		l.state, l.upSince = Up, now
		l.events = append(l.events, Event{State: Up, At: now})
	}
}
