package route

import (
	"errors"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
)

func TestLineRoutes(t *testing.T) {
	h := newHarness(t, 4, nil)
	h.link(0, 1, 10)
	h.link(1, 2, 10)
	h.link(2, 3, 10)
	h.run(2 * time.Second)
	tests := []struct {
		from, to int
		next     int
		metric   uint32
		hops     int
	}{
		{0, 3, 1, 30, 3},
		{3, 0, 2, 30, 3},
		{1, 3, 2, 20, 2},
		{2, 1, 1, 10, 1},
	}
	for _, tc := range tests {
		r, ok := h.route(tc.from, tc.to)
		if !ok || r.Next != nid(tc.next) || r.Metric != tc.metric || r.Hops != tc.hops || r.HasAlt {
			t.Errorf("route %d→%d = %+v, %v; want next %d metric %d hops %d, no alternate", tc.from, tc.to, r, ok, tc.next, tc.metric, tc.hops)
		}
	}
	if len(h.recvErr) != 0 {
		t.Fatalf("receive errors: %v", h.recvErr)
	}
}

// Diamond A(0)–B(1)–D(3), A–C(2)–D with the lower path through B.
func diamond(t *testing.T) *harness {
	h := newHarness(t, 4, nil)
	h.link(0, 1, 10)
	h.link(1, 3, 10)
	h.link(0, 2, 10)
	h.link(2, 3, 20)
	h.run(2 * time.Second)
	return h
}

func TestDiamondAlternateAndFailback(t *testing.T) {
	h := diamond(t)
	r, ok := h.route(0, 3)
	if !ok || r.Next != nid(1) || r.Metric != 20 || !r.HasAlt || r.Alt != nid(2) || r.AltMetric != 30 || !r.NodeProtecting {
		t.Fatalf("A→D = %+v; want next B (20), node-protecting alternate C (30)", r)
	}
	v := h.r[nid(0)].Table().Version()
	h.unlink(0, 1)
	// Local repair: before any message or SPF, the route already uses C.
	r, ok = h.route(0, 3)
	if !ok || r.Next != nid(2) || r.HasAlt {
		t.Fatalf("right after the link died, A→D = %+v, %v; want next C", r, ok)
	}
	if h.r[nid(0)].Table().Version() == v {
		t.Fatal("table version did not change on local repair")
	}
	h.run(2 * time.Second)
	if r, _ = h.route(0, 3); r.Next != nid(2) || r.Metric != 30 {
		t.Fatalf("after convergence A→D = %+v; want next C metric 30", r)
	}
	if r, _ = h.route(0, 1); r.Next != nid(2) || r.Metric != 40 {
		t.Fatalf("after convergence A→B = %+v; want next C metric 40", r)
	}
	h.link(0, 1, 10)
	h.run(2 * time.Second)
	if r, _ = h.route(0, 3); r.Next != nid(1) || r.Metric != 20 {
		t.Fatalf("after the link came back A→D = %+v; want next B again", r)
	}
}

func TestTriangleLinkProtectingAlternate(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.link(0, 1, 10)
	h.link(1, 2, 10)
	h.link(0, 2, 10)
	h.run(time.Second)
	r, _ := h.route(0, 2)
	if r.Next != nid(2) || !r.HasAlt || r.Alt != nid(1) || r.NodeProtecting || r.AltMetric != 20 {
		t.Fatalf("0→2 = %+v; want direct with link-protecting alternate 1", r)
	}
}

func TestTwoWayCheck(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.link(0, 1, 10)
	h.link(1, 2, 10)
	// 0 claims a link to 2 that 2 does not confirm.
	h.r[nid(0)].LinkUp(nid(2), 1)
	h.collect()
	h.run(time.Second)
	for _, c := range []struct{ from, to, next int }{{0, 2, 1}, {2, 0, 1}} {
		if r, _ := h.route(c.from, c.to); r.Next != nid(c.next) || r.Metric != 20 {
			t.Errorf("%d→%d = %+v; want via %d: a one-sided link must not be used", c.from, c.to, r, c.next)
		}
	}
}

func TestRetransmissionRecoversLoss(t *testing.T) {
	h := newHarness(t, 4, nil)
	dropped := 0
	h.drop = func(_, _ identity.NodeID, msg []byte) bool {
		if msg[0] == TypeLSA && dropped < 6 {
			dropped++
			return true
		}
		return false
	}
	h.link(0, 1, 10)
	h.link(1, 2, 10)
	h.link(2, 3, 10)
	h.run(5 * time.Second)
	if r, ok := h.route(0, 3); !ok || r.Metric != 30 {
		t.Fatalf("0→3 = %+v, %v after lost adverts", r, ok)
	}
	if h.r[nid(0)].Stats().Retransmits+h.r[nid(1)].Stats().Retransmits == 0 {
		t.Fatal("no retransmissions")
	}
}

func TestHysteresisAndRateLimit(t *testing.T) {
	h := newHarness(t, 2, nil)
	h.link(0, 1, 1000)
	h.run(time.Second)
	r0 := h.r[nid(0)]
	o := r0.Stats().Originated
	for _, m := range []uint32{1100, 900, 1200, 810} { // within 25%
		r0.SetMetric(nid(1), m)
	}
	h.run(time.Second)
	if got := r0.Stats().Originated; got != o {
		t.Fatalf("metric noise inside the hysteresis band re-originated %d times", got-o)
	}
	if m, _ := r0.LinkMetric(nid(1)); m != 1000 {
		t.Fatalf("advertised metric %d, want 1000", m)
	}
	for i := 0; i < 10; i++ { // ten big changes within 100 ms
		r0.SetMetric(nid(1), uint32(2000+1000*i*i))
	}
	h.collect()
	h.run(time.Second)
	if got := r0.Stats().Originated - o; got < 1 || got > 2 {
		t.Fatalf("ten quick changes made %d adverts, want 1 or 2", got)
	}
	if r, _ := h.route(1, 0); r.Metric == 0 {
		t.Fatal("no route")
	}
}

func lsaFrom(t *testing.T, origin identity.NodeID, seq uint64, links []Link, sign bool) []byte {
	t.Helper()
	body, err := EncodeLSABody(LSA{Origin: origin, Seq: seq, Links: links})
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, identity.SignatureSize)
	if sign {
		sig = fakeSig(origin, SignLabel, body)
	}
	return append(body, sig...)
}

func TestRejectsForgedReplayedMalformed(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.link(0, 1, 10)
	h.link(1, 2, 10)
	h.run(time.Second)
	r0 := h.r[nid(0)]
	r0.Events()
	e2 := r0.lsdb[nid(2)]
	if e2 == nil {
		t.Fatal("no advert of 2")
	}

	// Forged: 1 sends an advert in 2's name that 2 did not sign.
	forged := lsaFrom(t, nid(2), e2.seq+1, []Link{{nid(0), 1}}, false)
	if err := r0.Receive(nid(1), forged); !errors.Is(err, ErrForged) {
		t.Fatalf("forged advert: %v", err)
	}
	// Replayed: an older advert of 2, correctly signed.
	old := lsaFrom(t, nid(2), e2.seq-1, []Link{{nid(1), 10}}, true)
	if err := r0.Receive(nid(1), old); err != nil {
		t.Fatalf("stale advert is not an error: %v", err)
	}
	// Malformed.
	for _, m := range [][]byte{nil, {0x77}, forged[:100], {TypeAck, Version, 0, 0, 0, 0}} {
		if err := r0.Receive(nid(1), m); err == nil {
			t.Fatalf("malformed %x accepted", m)
		}
	}
	// Unknown origin.
	r0.cfg.Verify = fakeVerify(func(id identity.NodeID) bool { return id != nid(9) })
	if err := r0.Receive(nid(1), lsaFrom(t, nid(9), 5, nil, true)); !errors.Is(err, ErrUnknownOrigin) {
		t.Fatalf("unknown origin: %v", err)
	}
	s := r0.Stats()
	if s.Forged != 1 || s.Old != 1 || s.Malformed != 4 || s.UnknownOrigin != 1 {
		t.Fatalf("stats %+v", s)
	}
	if r0.lsdb[nid(2)].seq != e2.seq {
		t.Fatal("a rejected advert replaced the stored one")
	}
	kinds := map[EventKind]int{}
	for _, e := range r0.Events() {
		kinds[e.Kind]++
		if e.Neighbour != nid(1) {
			t.Fatalf("event %+v names the wrong neighbour", e)
		}
	}
	if kinds[EventForged] != 1 || kinds[EventMalformed] != 4 {
		t.Fatalf("events %v", kinds)
	}
	// The stale copy was answered with ours.
	found := false
	for _, o := range r0.Outbox() {
		if o.To == nid(1) && o.Msg[0] == TypeLSA && lsaView(o.Msg).seq() == e2.seq {
			found = true
		}
	}
	if !found {
		t.Fatal("the sender of a stale advert did not get the current one")
	}
}

func TestFloodingNeighbourLimitedAndReported(t *testing.T) {
	h := newHarness(t, 2, nil)
	h.link(0, 1, 10)
	h.run(time.Second)
	r0 := h.r[nid(0)]
	r0.Events()
	limited := 0
	for i := 0; i < 8000; i++ {
		err := r0.Receive(nid(1), lsaFrom(t, nid(1000+i), 1, nil, true))
		if errors.Is(err, ErrRateLimited) {
			limited++
		}
	}
	if limited < 3000 {
		t.Fatalf("only %d of 8000 adverts in one instant were rate limited", limited)
	}
	ev := r0.Events()
	if len(ev) != 1 || ev[0].Kind != EventFlood || ev[0].Neighbour != nid(1) {
		t.Fatalf("events %+v, want one flood report", ev)
	}
	if r0.Stats().RateLimited != uint64(limited) {
		t.Fatal("rate-limited count")
	}
	// Tokens come back with time.
	h.run(10 * time.Second)
	if err := r0.Receive(nid(1), lsaFrom(t, nid(5000), 1, nil, true)); err != nil {
		t.Fatalf("after a pause: %v", err)
	}
}

func TestRestartWithClockBehind(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.link(0, 1, 10)
	h.link(1, 2, 10)
	h.run(time.Second)
	oldSeq := h.r[nid(2)].Seq()
	// Node 2 restarts with its clock an hour behind.
	id := nid(2)
	h.skew[id] = -time.Hour
	h.r[id] = New(Config{
		Self:   id,
		Sign:   func(label string, msg []byte) []byte { return fakeSig(id, label, msg) },
		Verify: fakeVerify(nil),
		Now:    func() time.Time { return h.now.Add(-time.Hour) },
	})
	h.r[nid(1)].LinkDown(id)
	h.r[nid(1)].LinkUp(id, 10)
	h.r[id].LinkUp(nid(1), 10)
	h.collect()
	h.run(2 * time.Second)
	if s := h.r[id].Seq(); s <= oldSeq {
		t.Fatalf("restarted node's seq %d not above its old %d", s, oldSeq)
	}
	if h.r[nid(0)].lsdb[id].seq != h.r[id].Seq() {
		t.Fatal("the network did not take the restarted node's new advert")
	}
	if r, ok := h.route(0, 2); !ok || r.Metric != 20 {
		t.Fatalf("0→2 = %+v, %v", r, ok)
	}
	kinds := map[EventKind]int{}
	for _, e := range h.r[id].Events() {
		kinds[e.Kind]++
	}
	if kinds[EventSelfSeq] == 0 {
		t.Fatal("no self-seq event")
	}
}

func TestAgingAndTombstone(t *testing.T) {
	h := newHarness(t, 2, func(c *Config) { c.RefreshInterval = time.Second })
	h.link(0, 1, 10)
	h.run(time.Second)
	r0 := h.r[nid(0)]
	ghost := lsaFrom(t, nid(9), 7, []Link{{nid(1), 5}}, true)
	if err := r0.Receive(nid(1), ghost); err != nil {
		t.Fatal(err)
	}
	h.run(5 * time.Second) // 0 and 1 refresh; 9 never does
	if _, ok := r0.lsdb[nid(9)]; ok || r0.Stats().Expired != 1 {
		t.Fatalf("ghost advert not aged out (expired %d)", r0.Stats().Expired)
	}
	if _, ok := r0.lsdb[nid(1)]; !ok {
		t.Fatal("a refreshed advert aged out")
	}
	old := r0.Stats().Old
	if err := r0.Receive(nid(1), ghost); err != nil || r0.Stats().Old != old+1 {
		t.Fatalf("late copy of an aged-out advert: %v, old %d", err, r0.Stats().Old)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	h := newHarness(t, 5, nil)
	for i := 0; i < 4; i++ {
		h.link(i, i+1, 10)
	}
	h.run(time.Second)
	tb := h.r[nid(0)].Table()
	up := func(identity.NodeID) bool { return true }
	dst := nid(4)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := tb.Lookup(dst); !ok {
			t.Fatal("no route")
		}
		if _, ok := tb.NextHop(dst, identity.NodeID{}, up); !ok {
			t.Fatal("no next hop")
		}
	})
	if allocs != 0 {
		t.Fatalf("Lookup allocates %.1f times", allocs)
	}
}

func TestNextHop(t *testing.T) {
	tb := &Table{dst: []identity.NodeID{nid(5)}, routes: []Route{{Next: nid(1), Alt: nid(2), HasAlt: true}}}
	upAll := func(identity.NodeID) bool { return true }
	upNot1 := func(id identity.NodeID) bool { return id != nid(1) }
	tests := []struct {
		name string
		from identity.NodeID
		up   func(identity.NodeID) bool
		want identity.NodeID
		ok   bool
	}{
		{"primary", identity.NodeID{}, upAll, nid(1), true},
		{"primary down", identity.NodeID{}, upNot1, nid(2), true},
		{"no u-turn to primary", nid(1), upAll, nid(2), true},
		{"no u-turn to alternate", nid(2), upNot1, identity.NodeID{}, false},
		{"both down", identity.NodeID{}, func(identity.NodeID) bool { return false }, identity.NodeID{}, false},
	}
	for _, tc := range tests {
		got, ok := tb.NextHop(nid(5), tc.from, tc.up)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %v %v, want %v %v", tc.name, got.Short(), ok, tc.want.Short(), tc.ok)
		}
	}
	if _, ok := tb.NextHop(nid(6), identity.NodeID{}, upAll); ok {
		t.Error("route to an unknown destination")
	}
}

func TestRealSignatures(t *testing.T) {
	const n = 3
	keys := map[identity.NodeID]*identity.SigningKey{}
	for i := 0; i < n; i++ {
		k, err := identity.GenerateSigningKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[nid(i)] = k
	}
	verify := func(o identity.NodeID, label string, msg, sig []byte) error {
		k := keys[o]
		if k == nil {
			return ErrUnknownOrigin
		}
		return k.Public().Verify(label, msg, sig)
	}
	h := newHarness(t, n, func(c *Config) {
		c.Sign = keys[c.Self].Sign
		c.Verify = verify
	})
	h.link(0, 1, 10)
	h.link(1, 2, 10)
	h.run(time.Second)
	if r, ok := h.route(0, 2); !ok || r.Metric != 20 {
		t.Fatalf("0→2 = %+v, %v", r, ok)
	}
	// An advert of 2 with one flipped bit in the ML-DSA half is forged.
	raw := append([]byte(nil), h.r[nid(0)].lsdb[nid(2)].raw...)
	raw[20]++ // newer seq, same signature
	if err := h.r[nid(0)].Receive(nid(1), raw); !errors.Is(err, ErrForged) || !errors.Is(err, identity.ErrBadEd25519Signature) {
		t.Fatalf("tampered advert: %v", err)
	}
}

func TestForgeriesCostStrikes(t *testing.T) {
	h := newHarness(t, 2, nil)
	h.link(0, 1, 10)
	h.run(time.Second)
	r0 := h.r[nid(0)]
	verified := 0
	r0.cfg.Verify = func(o identity.NodeID, label string, msg, sig []byte) error {
		verified++
		return fakeVerify(nil)(o, label, msg, sig)
	}
	for i := 0; i < 20; i++ {
		_ = r0.Receive(nid(1), lsaFrom(t, nid(100+i), 1, nil, false))
	}
	if s := r0.Stats(); verified != strikeBurst || s.Forged != strikeBurst || s.RateLimited != 20-strikeBurst {
		t.Fatalf("verified %d, stats %+v", verified, s)
	}
	h.run(strikeRefill)
	if err := r0.Receive(nid(1), lsaFrom(t, nid(200), 1, nil, true)); err != nil {
		t.Fatalf("a strike did not come back: %v", err)
	}
}

func TestPerOriginArrivalLimitDefers(t *testing.T) {
	h := newHarness(t, 2, nil)
	h.link(0, 1, 10)
	h.run(time.Second)
	r0 := h.r[nid(0)]
	if err := r0.Receive(nid(1), lsaFrom(t, nid(7), 100, nil, true)); err != nil {
		t.Fatal(err)
	}
	// Two successors within the 25 ms limit: held back, the newest kept.
	h.now = h.now.Add(5 * time.Millisecond)
	_ = r0.Receive(nid(1), lsaFrom(t, nid(7), 200, nil, true))
	_ = r0.Receive(nid(1), lsaFrom(t, nid(7), 300, []Link{{nid(1), 3}}, true))
	if r0.lsdb[nid(7)].seq != 100 || r0.Stats().Deferred != 2 {
		t.Fatalf("seq %d, deferred %d", r0.lsdb[nid(7)].seq, r0.Stats().Deferred)
	}
	if d := r0.NextDeadline().Sub(h.now); d > 20*time.Millisecond {
		t.Fatalf("next deadline in %v", d)
	}
	h.run(50 * time.Millisecond)
	if r0.lsdb[nid(7)].seq != 300 || r0.Stats().Accepted == 0 {
		t.Fatalf("deferred advert not installed: seq %d", r0.lsdb[nid(7)].seq)
	}
}

// TestSyncAfterAsymmetricLinkUp: each end of a link decides on its own when
// the link is up. B hears A's summary (A's link is up, B's not yet) before C's
// advert reaches B; when B's links come up, C's advert is old news at B and is
// not flooded, and A's summary, handled earlier, asked for nothing more. B's
// summary must bring A what it lacks (A pulls it), well before the periodic
// sync; and if A's pull is lost, A asks again.
func TestSyncAfterAsymmetricLinkUp(t *testing.T) {
	for _, lose := range []bool{false, true} {
		h := newHarness(t, 3, nil)
		a, b, c := nid(0), nid(1), nid(2)
		h.r[a].LinkUp(b, 10)
		h.collect()
		h.run(5 * time.Millisecond) // B takes A's summary and advert, its link not up
		h.r[c].LinkUp(b, 10)
		h.collect()
		h.run(5 * time.Millisecond) // B takes C's summary and advert
		pulls, lost := 0, 0
		h.drop = func(from, to identity.NodeID, msg []byte) bool {
			if from == a && msg[0] == TypeSummary {
				pulls++
				if lose && lost == 0 {
					lost++
					return true
				}
			}
			return false
		}
		h.r[b].LinkUp(a, 10)
		h.r[b].LinkUp(c, 10)
		h.collect()
		within := 500 * time.Millisecond
		if lose {
			within += h.r[a].cfg.RxmtInterval
		}
		h.run(within)
		for _, p := range [][2]int{{0, 2}, {2, 0}} {
			if r, ok := h.route(p[0], p[1]); !ok || r.Next != b || r.Metric != 20 {
				t.Errorf("lose %v: %d→%d = %+v, %v; want via 1, metric 20", lose, p[0], p[1], r, ok)
			}
		}
		if want := 1 + lost; pulls != want {
			t.Errorf("lose %v: A sent %d summaries after B's link came up, want %d", lose, pulls, want)
		}
		h.run(10 * time.Second)
		if pulls != 1+lost {
			t.Errorf("lose %v: A sent %d summaries, want %d: a pull is not repeated once satisfied", lose, pulls, 1+lost)
		}
		if len(h.recvErr) != 0 {
			t.Fatalf("receive errors: %v", h.recvErr)
		}
	}
}

// TestConvergesWhateverTheLinkUpOrder: random small meshes whose links come
// up at each end at independent moments, with messages flowing as soon as
// either end sends: every router must route to every other within a second
// of the last link coming up (no message is lost, so neither retransmission
// nor the periodic sync may be needed).
func TestConvergesWhateverTheLinkUpOrder(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		nodes := 3 + rng.IntN(4)
		h := newHarness(t, nodes, nil)
		type end struct {
			at   time.Duration
			a, b int
		}
		var ends []end
		linked := map[[2]int]bool{}
		addLink := func(a, b int) {
			if a == b || linked[[2]int{min(a, b), max(a, b)}] {
				return
			}
			linked[[2]int{min(a, b), max(a, b)}] = true
			ends = append(ends, end{time.Duration(rng.IntN(40)) * time.Millisecond, a, b},
				end{time.Duration(rng.IntN(40)) * time.Millisecond, b, a})
		}
		for i := 1; i < nodes; i++ {
			addLink(i, rng.IntN(i)) // a random tree, so connected
		}
		for range rng.IntN(nodes) {
			addLink(rng.IntN(nodes), rng.IntN(nodes))
		}
		sort.Slice(ends, func(i, j int) bool { return ends[i].at < ends[j].at })
		start := h.now
		for _, e := range ends {
			h.run(start.Add(e.at).Sub(h.now))
			h.r[nid(e.a)].LinkUp(nid(e.b), 10)
			h.collect()
		}
		h.run(time.Second)
		for i := range nodes {
			for j := range nodes {
				if _, ok := h.route(i, j); i != j && !ok {
					t.Fatalf("seed %d, %d nodes, links %v: %d has no route to %d a second after the last link came up", seed, nodes, linked, i, j)
				}
			}
		}
	}
}
