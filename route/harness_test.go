package route

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
)

// fakeSig is a stand-in for the hybrid signature in tests that run many
// routers: SHA-256 of (origin, label, msg) repeated to the real size. Tests of
// the real signature are in TestRealSignatures.
func fakeSig(origin identity.NodeID, label string, msg []byte) []byte {
	h := sha256.New()
	h.Write(origin[:])
	h.Write([]byte(label))
	h.Write(msg)
	d := h.Sum(nil)
	return bytes.Repeat(d, identity.SignatureSize/32+1)[:identity.SignatureSize]
}

var errFakeBad = errors.New("fake signature does not verify")

func fakeVerify(known func(identity.NodeID) bool) func(identity.NodeID, string, []byte, []byte) error {
	return func(o identity.NodeID, label string, msg, sig []byte) error {
		if known != nil && !known(o) {
			return fmt.Errorf("no key for %s: %w", o.Short(), ErrUnknownOrigin)
		}
		if !bytes.Equal(sig, fakeSig(o, label, msg)) {
			return errFakeBad
		}
		return nil
	}
}

func nid(i int) identity.NodeID {
	var id identity.NodeID
	id[0] = byte(i >> 8)
	id[1] = byte(i)
	id[15] = 0x5a
	return id
}

// harness runs a few routers on a shared fake clock with a fixed message delay.
type harness struct {
	t       testing.TB
	now     time.Time
	r       map[identity.NodeID]*Router
	ids     []identity.NodeID
	delay   time.Duration
	queue   []hmsg
	seq     int
	cut     map[[2]identity.NodeID]bool
	drop    func(from, to identity.NodeID, msg []byte) bool
	sent    int
	tamper  func(from, to identity.NodeID, msg []byte) []byte
	recvErr []error
	skew    map[identity.NodeID]time.Duration // a router's clock minus the harness clock
}

type hmsg struct {
	at       time.Time
	seq      int
	from, to identity.NodeID
	msg      []byte
}

func newHarness(t testing.TB, n int, mod func(*Config)) *harness {
	h := &harness{t: t, now: time.Unix(1_800_000_000, 0), r: map[identity.NodeID]*Router{}, delay: time.Millisecond, cut: map[[2]identity.NodeID]bool{}, skew: map[identity.NodeID]time.Duration{}}
	for i := 0; i < n; i++ {
		id := nid(i)
		cfg := Config{
			Self:   id,
			Sign:   func(label string, msg []byte) []byte { return fakeSig(id, label, msg) },
			Verify: fakeVerify(nil),
			Now:    func() time.Time { return h.now },
		}
		if mod != nil {
			mod(&cfg)
		}
		h.r[id] = New(cfg)
		h.ids = append(h.ids, id)
	}
	return h
}

func key(a, b identity.NodeID) [2]identity.NodeID {
	if cmpID(&a, &b) > 0 {
		a, b = b, a
	}
	return [2]identity.NodeID{a, b}
}

func (h *harness) link(a, b int, m uint32) {
	h.r[nid(a)].LinkUp(nid(b), m)
	h.r[nid(b)].LinkUp(nid(a), m)
	delete(h.cut, key(nid(a), nid(b)))
	h.collect()
}

func (h *harness) unlink(a, b int) {
	h.cut[key(nid(a), nid(b))] = true
	h.r[nid(a)].LinkDown(nid(b))
	h.r[nid(b)].LinkDown(nid(a))
	h.collect()
}

func (h *harness) collect() {
	for _, id := range h.ids {
		for _, o := range h.r[id].Outbox() {
			h.sent++
			if h.cut[key(id, o.To)] || (h.drop != nil && h.drop(id, o.To, o.Msg)) {
				continue
			}
			msg := o.Msg
			if h.tamper != nil {
				msg = h.tamper(id, o.To, msg)
			}
			h.seq++
			h.queue = append(h.queue, hmsg{at: h.now.Add(h.delay), seq: h.seq, from: id, to: o.To, msg: msg})
		}
	}
	sort.Slice(h.queue, func(i, j int) bool {
		if !h.queue[i].at.Equal(h.queue[j].at) {
			return h.queue[i].at.Before(h.queue[j].at)
		}
		return h.queue[i].seq < h.queue[j].seq
	})
}

// run advances the clock by d, delivering messages and ticking routers.
func (h *harness) run(d time.Duration) {
	end := h.now.Add(d)
	for {
		next := end
		if len(h.queue) > 0 && h.queue[0].at.Before(next) {
			next = h.queue[0].at
		}
		for _, id := range h.ids {
			if dl := h.r[id].NextDeadline().Add(-h.skew[id]); dl.Before(next) {
				next = dl
			}
		}
		if next.After(h.now) {
			h.now = next
		}
		if !h.now.Before(end) && (len(h.queue) == 0 || h.queue[0].at.After(end)) {
			h.now = end
			for _, id := range h.ids {
				if !h.r[id].NextDeadline().Add(-h.skew[id]).After(h.now) {
					h.r[id].Tick()
				}
			}
			h.collect()
			return
		}
		for len(h.queue) > 0 && !h.queue[0].at.After(h.now) {
			m := h.queue[0]
			h.queue = h.queue[1:]
			if err := h.r[m.to].Receive(m.from, m.msg); err != nil {
				h.recvErr = append(h.recvErr, err)
			}
		}
		for _, id := range h.ids {
			if !h.r[id].NextDeadline().Add(-h.skew[id]).After(h.now) {
				h.r[id].Tick()
			}
		}
		h.collect()
	}
}

func (h *harness) route(from, to int) (Route, bool) {
	return h.r[nid(from)].Table().Lookup(nid(to))
}
