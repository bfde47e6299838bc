package heal

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// fuzzReader turns fuzz bytes into values; past the end it yields zeros.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) done() bool { return len(r.b) == 0 }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *fuzzReader) u64() uint64 {
	var buf [8]byte
	n := copy(buf[:], r.b)
	r.b = r.b[n:]
	return binary.LittleEndian.Uint64(buf[:])
}

// id is mostly one of a few peers, sometimes empty or absurdly long.
func (r *fuzzReader) id() string {
	switch v := r.byte(); {
	case v < 200:
		return string(rune('a' + v%10))
	case v < 220:
		return ""
	default:
		return strings.Repeat("x", int(v)*2)
	}
}

// float is usually a plausible fraction, sometimes any bit pattern (NaN, Inf).
func (r *fuzzReader) float() float64 {
	if v := r.byte(); v < 192 {
		return float64(v) / 160
	}
	return math.Float64frombits(r.u64())
}

func (r *fuzzReader) dur() time.Duration {
	if v := r.byte(); v < 192 {
		return time.Duration(v) * time.Millisecond
	}
	return time.Duration(r.u64())
}

// FuzzObserve feeds random observation streams, steps and outcomes. The loop
// must not panic, must stay within its memory bounds, must always report one
// of the three health states, and its state must always encode as JSON.
func FuzzObserve(f *testing.F) {
	f.Add([]byte{0, 1, 1, 20, 0, 0, 4, 10, 4, 200, 5, 0})
	f.Add([]byte("\x00\x01\x01\x14\x00\x00\x04\x0a\x00\x01\x01\x14\x00\xa0\x04\x0a\x01\x02\xff\xff\x04\xff\x05\x01\x06\x01"))
	f.Add([]byte(strings.Repeat("\x00\x03\x01\x10\x01\x00\x04\x20", 40) + strings.Repeat("\x00\x03\x01\x10\x01\xa0\x04\x20", 20)))
	f.Add([]byte(strings.Repeat("\x01\x02\xbf\x04\x40", 60)))
	f.Add([]byte(strings.Repeat("\x02\x01\x00\x03\x05\x04\x80", 30)))
	f.Fuzz(fuzzOne)
}

// fuzzOne runs one stream; see FuzzObserve.
func fuzzOne(t *testing.T, data []byte) {
	cfg := Config{Window: 8, MinSamples: 3, MaxLinks: 6, MaxPeers: 6, MaxPaths: 6, MaxIncidents: 4, MaxActions: 4, MaxReasons: 5,
		StaleAfter: 5 * time.Second, VerifyAfter: 2 * time.Second, OutcomeTimeout: 4 * time.Second, ResolveHold: time.Second}
	l := New(cfg)
	r := &fuzzReader{data}
	now := t0
	var ids []uint64
	for ops := 0; !r.done() && ops < 2000; ops++ {
		o := Observation{Time: now}
		switch r.byte() % 8 {
		case 0:
			o.Links = []LinkSample{{Peer: r.id(), Transport: string(rune('0' + r.byte()%3)), Up: r.byte()%4 != 0,
				RTT: r.dur(), Jitter: r.dur(), Loss: r.float()}}
		case 1:
			v := r.u64() % 64
			o.Peers = []PeerCounters{{Peer: r.id(), BadAEAD: v * uint64(r.byte()), ForgedAdverts: v % 4,
				HandshakeFailures: uint64(r.byte()), Replays: r.u64(), BadMAC: uint64(r.byte()) % 3, FloodedAdverts: uint64(r.byte())}}
		case 2:
			o.Paths = []PathSample{{Dest: r.id(), Reachable: r.byte()%2 == 0, Via: r.id()}}
		case 3:
			drops := map[string]uint64{}
			for range int(r.byte() % 24) {
				drops[r.id()+string(rune('A'+r.byte()%26))] = r.u64() % 1000000
			}
			o.Node = &NodeSample{CPU: r.float(), Queue: r.float(), Drops: drops}
		case 4:
			d := time.Duration(r.byte()) * 100 * time.Millisecond
			if r.byte() == 255 {
				d = -d // clocks can step back
			}
			now = now.Add(d)
			for _, a := range l.Step(now) {
				ids = append(ids, a.ID)
			}
			check(t, l, cfg)
		case 5:
			if len(ids) > 0 {
				var err error
				if r.byte()%3 == 0 {
					err = errors.New(strings.Repeat("e", int(r.byte())*3))
				}
				l.Outcome(ids[int(r.byte())%len(ids)], err, now)
			}
		case 6:
			o.Forget = []string{r.id()}
		case 7:
			l.Outcome(r.u64(), nil, now)
		}
		l.Observe(o)
	}
	l.Step(now.Add(time.Second))
	check(t, l, cfg)
}

func check(t *testing.T, l *Loop, cfg Config) {
	t.Helper()
	h := l.Health()
	switch h.State {
	case Healthy, Degraded, Critical:
	default:
		t.Fatalf("health state %q", h.State)
	}
	if (h.State == Healthy) != (len(h.Reasons) == 0) || len(h.Reasons) > cfg.MaxReasons {
		t.Fatalf("health %s with %d reasons", h.State, len(h.Reasons))
	}
	m, k := l.mon, l.k
	if len(m.links) > cfg.MaxLinks || len(m.peers) > cfg.MaxPeers || len(m.paths) > cfg.MaxPaths || len(m.node.drops) > maxDropReasons {
		t.Fatalf("monitor over its bounds: %d links, %d peers, %d paths, %d drop reasons", len(m.links), len(m.peers), len(m.paths), len(m.node.drops))
	}
	for _, l := range m.links {
		if l.rtt.base.Len() > cfg.Window || len(l.loss.recent.buf) > DefaultConfig().Recent {
			t.Fatal("window over its bound")
		}
	}
	if len(k.closed) > cfg.MaxIncidents || len(k.open) > cfg.MaxLinks+cfg.MaxPeers+1 || len(k.backoff) > 8*(cfg.MaxPeers+1) || len(k.scores) > len(kindOrder)*8 {
		t.Fatalf("knowledge over its bounds: %d closed, %d open, %d backoffs", len(k.closed), len(k.open), len(k.backoff))
	}
	for _, inc := range k.Incidents(0) {
		if len(inc.Actions) > cfg.MaxActions {
			t.Fatalf("incident with %d actions", len(inc.Actions))
		}
	}
	if len(l.issued) > 4*(cfg.MaxLinks+cfg.MaxPeers+1)+cfg.MaxIncidents*4 {
		t.Fatalf("%d actions awaiting outcomes", len(l.issued))
	}
	if _, err := json.Marshal(l.Snapshot(0)); err != nil {
		t.Fatalf("snapshot does not encode: %v", err)
	}
}
