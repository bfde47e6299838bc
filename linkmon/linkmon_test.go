package linkmon

import (
	"errors"
	"testing"
	"time"
)

// pair runs two monitors of one link in 1 ms steps of a fake clock, with a
// one-way delay, optional loss of every k-th message and a cut switch.
type pair struct {
	now       time.Time
	a, b      *Link
	delay     time.Duration
	cut       bool
	dropEvery int
	n         int
	inflight  []msg
	events    []Event // a's
}

type msg struct {
	at     time.Time
	toA    bool
	b      []byte
	isData bool
}

func newPair(delay time.Duration, mod func(*Config)) *pair {
	p := &pair{now: time.Unix(1_800_000_000, 0), delay: delay}
	mk := func(seed byte) *Link {
		c := Config{Now: func() time.Time { return p.now }}
		c.Seed[0] = seed
		if mod != nil {
			mod(&c)
		}
		return New(c)
	}
	p.a, p.b = mk(1), mk(2)
	return p
}

func (p *pair) send(toA bool, b []byte) {
	if b == nil || p.cut {
		return
	}
	p.n++
	if p.dropEvery > 0 && p.n%p.dropEvery == 0 {
		return
	}
	p.inflight = append(p.inflight, msg{at: p.now.Add(p.delay), toA: toA, b: b})
}

func (p *pair) run(d time.Duration) {
	end := p.now.Add(d)
	for p.now.Before(end) {
		p.now = p.now.Add(time.Millisecond)
		keep := p.inflight[:0]
		var due []msg
		for _, m := range p.inflight {
			if m.at.After(p.now) {
				keep = append(keep, m)
			} else {
				due = append(due, m)
			}
		}
		p.inflight = keep
		for _, m := range due {
			dst := p.b
			if m.toA {
				dst = p.a
			}
			reply, err := dst.Receive(m.b)
			if err != nil {
				panic(err)
			}
			p.send(!m.toA, reply)
		}
		if !p.a.NextDeadline().After(p.now) {
			p.send(false, p.a.Tick())
		}
		if !p.b.NextDeadline().After(p.now) {
			p.send(true, p.b.Tick())
		}
		p.events = append(p.events, p.a.Events()...)
	}
}

func TestUpMeasureDownUp(t *testing.T) {
	p := newPair(5*time.Millisecond, nil)
	p.run(300 * time.Millisecond)
	if p.a.State() != Up || len(p.events) != 1 {
		t.Fatalf("state %v, events %+v after 300 ms", p.a.State(), p.events)
	}
	// First probe at 0, replies after 10 ms: third reply at 110 ms.
	if at := p.events[0].At.Sub(time.Unix(1_800_000_000, 0)); at < 100*time.Millisecond || at > 130*time.Millisecond {
		t.Fatalf("came up at %v", at)
	}
	p.run(2 * time.Second)
	s := p.a.Stats()
	if s.SRTT < 9*time.Millisecond || s.SRTT > 12*time.Millisecond || s.Loss != 0 || s.Jitter > time.Millisecond {
		t.Fatalf("stats %+v", s)
	}
	cutAt := p.now
	p.cut = true
	p.run(time.Second)
	if p.a.State() != Down || len(p.events) != 2 {
		t.Fatalf("after cut: %v, %+v", p.a.State(), p.events)
	}
	detect := p.events[1].At.Sub(cutAt)
	// Down after 160 ms of silence, counted from the last reply, which came
	// up to one probe interval before the cut.
	if sil := p.events[1].Silence; sil < 150*time.Millisecond || sil > 200*time.Millisecond {
		t.Fatalf("down after %v of silence, want 150-200 ms", sil)
	}
	if detect < 100*time.Millisecond || detect > 220*time.Millisecond {
		t.Fatalf("detected a cut after %v, want 100-220 ms", detect)
	}
	p.cut = false
	restoreAt := p.now
	p.run(time.Second)
	if p.a.State() != Up || len(p.events) != 3 {
		t.Fatalf("after restore: %v, %+v", p.a.State(), p.events)
	}
	if up := p.events[2].At.Sub(restoreAt); up > 200*time.Millisecond {
		t.Fatalf("came back after %v", up)
	}
	if s := p.a.Stats(); s.Flaps != 1 || s.Sent == 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFlappingLinkDampened(t *testing.T) {
	p := newPair(time.Millisecond, nil)
	p.run(500 * time.Millisecond)
	var upAfter []time.Duration
	for i := 0; i < 4; i++ {
		p.cut = true
		p.run(500 * time.Millisecond)
		p.cut = false
		start := p.now
		n := len(p.events)
		p.run(3 * time.Second)
		if len(p.events) != n+1 || p.events[n].State != Up {
			t.Fatalf("round %d: %+v", i, p.events[n:])
		}
		upAfter = append(upAfter, p.events[n].At.Sub(start))
	}
	for i := 1; i < len(upAfter); i++ {
		if upAfter[i] <= upAfter[i-1] {
			t.Fatalf("a flapping link comes back no slower each time: %v", upAfter)
		}
	}
}

func TestLossMeasuredAndTolerated(t *testing.T) {
	p := newPair(2*time.Millisecond, nil)
	p.dropEvery = 10 // 10% of messages: about 19% of round trips
	p.run(10 * time.Second)
	s := p.a.Stats()
	if s.Loss < 0.08 || s.Loss > 0.35 {
		t.Fatalf("loss %v", s.Loss)
	}
	if s.DeadAfter <= 150*time.Millisecond {
		t.Fatalf("a lossy link keeps the minimum dead time %v", s.DeadAfter)
	}
	for _, e := range p.events[1:] {
		t.Fatalf("a lossy but live link changed state: %+v", e)
	}
}

func TestHeardKeepsLinkUp(t *testing.T) {
	p := newPair(time.Millisecond, nil)
	p.run(300 * time.Millisecond)
	p.cut = true
	for i := 0; i < 100; i++ {
		p.run(10 * time.Millisecond)
		p.a.Heard() // data keeps flowing from b although probes are lost
	}
	if p.a.State() != Up {
		t.Fatal("link went down although the neighbour was heard")
	}
}

func TestBadReplies(t *testing.T) {
	p := newPair(time.Millisecond, nil)
	probe := p.a.Tick()
	m, err := Decode(probe)
	if err != nil || m.Type != TypeProbe || m.Seq != 1 {
		t.Fatalf("probe %+v, %v", m, err)
	}
	for _, r := range []Message{
		{Type: TypeReply, Seq: 1, Token: m.Token + 1},
		{Type: TypeReply, Seq: 2, Token: m.Token},
		{Type: TypeReply, Seq: 0},
	} {
		if _, err := p.a.Receive(r.Append(nil)); !errors.Is(err, ErrToken) {
			t.Errorf("reply %+v: %v", r, err)
		}
	}
	if p.a.Stats().BadReply != 3 {
		t.Fatal("bad replies not counted")
	}
	if _, err := p.a.Receive(Message{Type: TypeReply, Seq: 1, Token: m.Token}.Append(nil)); err != nil {
		t.Fatal(err)
	}
}

func TestDecode(t *testing.T) {
	good := Message{Type: TypeReply, Seq: 7, Token: 0x0102030405060708}.Append(nil)
	if len(good) != MessageSize || good[4] != 7 || good[8] != 8 {
		t.Fatalf("layout % x", good)
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short", good[:15], ErrShort},
		{"long", append(append([]byte(nil), good...), 0), ErrShort},
		{"type", append([]byte{0x22}, good[1:]...), ErrType},
		{"reserved", append([]byte{TypeProbe, 0, 1}, good[3:]...), ErrReserved},
	}
	for _, tc := range tests {
		if _, err := Decode(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	m, err := Decode(good)
	if err != nil || m.Seq != 7 || m.Token != 0x0102030405060708 {
		t.Fatalf("%+v %v", m, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Message{Type: TypeProbe, Seq: 1, Token: 99}.Append(nil))
	f.Add(Message{Type: TypeReply, Seq: 1 << 31, Token: 1 << 63}.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		if got := m.Append(nil); string(got) != string(b) {
			t.Fatal("message has two encodings")
		}
	})
}

// FuzzReceive: a link must survive any input and still answer probes.
func FuzzReceive(f *testing.F) {
	f.Add(Message{Type: TypeReply, Seq: 1}.Append(nil))
	f.Add(Message{Type: TypeProbe, Seq: 5}.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := newPair(time.Millisecond, nil)
		p.run(200 * time.Millisecond)
		_, _ = p.a.Receive(b)
		p.run(200 * time.Millisecond)
		if p.a.State() != Up {
			t.Fatal("link down after bad input")
		}
	})
}
