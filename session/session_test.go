package session

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/wire"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func pair(t testing.TB, suite uint8) (a, b *Keypair) {
	t.Helper()
	var k1, k2 [32]byte
	k1[0], k2[0] = 1, 2
	a, err := NewKeypair(k1, k2, suite, 10, 20, true, t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err = NewKeypair(k2, k1, suite, 20, 10, false, t0)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func seal(t testing.TB, kp *Keypair, payload []byte) []byte {
	t.Helper()
	buf := make([]byte, wire.DataHeaderSize+len(payload), wire.DataOverhead+len(payload))
	copy(buf[wire.DataHeaderSize:], payload)
	n, err := kp.Seal(buf, len(payload), t0)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func open(kp *Keypair, pkt []byte) ([]byte, error) {
	recv, counter, err := wire.ParseDataHeader(pkt)
	if err != nil {
		return nil, err
	}
	if recv != kp.LocalIndex {
		return nil, errors.New("wrong receiver")
	}
	return kp.Open(bytes.Clone(pkt), counter, t0)
}

func TestSealOpen(t *testing.T) {
	for _, suite := range []uint8{wire.SuiteAES256GCM, wire.SuiteChaCha20Poly1305} {
		a, b := pair(t, suite)
		msg := []byte("marker: x0t-plaintext-never-on-the-wire")
		pkt := seal(t, a, msg)
		if bytes.Contains(pkt, msg[:8]) {
			t.Fatal("plaintext visible in the sealed packet")
		}
		got, err := open(b, pkt)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("suite %d: open: %q %v", suite, got, err)
		}
		if _, err := open(b, pkt); !errors.Is(err, ErrReplay) {
			t.Fatalf("replayed packet: %v", err)
		}
		// Any flipped bit, header included, fails authentication.
		for _, off := range []int{1, 5, 9, 16, len(pkt) - 1} {
			pkt2 := seal(t, a, msg)
			pkt2[off] ^= 0x10
			if _, err := open(b, pkt2); err == nil {
				t.Fatalf("suite %d: flipped byte %d accepted", suite, off)
			}
		}
		// A packet sealed in one direction does not open in the same direction.
		if _, err := a.Open(bytes.Clone(seal(t, a, msg)), 0, t0); err == nil {
			t.Fatal("own packet opened with own receive key")
		}
		// Keepalive: an empty payload.
		if got, err := open(b, seal(t, a, nil)); err != nil || len(got) != 0 {
			t.Fatalf("keepalive: %v", err)
		}
	}
}

func TestReorderingAndWindow(t *testing.T) {
	a, b := pair(t, wire.SuiteAES256GCM)
	var pkts [][]byte
	for range ReplayWindow + 100 {
		pkts = append(pkts, seal(t, a, []byte{0x45}))
	}
	last := len(pkts) - 1
	if _, err := open(b, pkts[last]); err != nil {
		t.Fatal(err)
	}
	if _, err := open(b, pkts[last-10]); err != nil {
		t.Fatalf("reordered packet inside the window: %v", err)
	}
	if _, err := open(b, pkts[last-ReplayWindow+1]); err != nil {
		t.Fatalf("oldest packet inside the window: %v", err)
	}
	if _, err := open(b, pkts[50]); !errors.Is(err, ErrReplay) {
		t.Fatalf("packet below the window: %v", err)
	}
}

func TestReplayFilterMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		var f ReplayFilter
		seen := map[uint64]bool{}
		var highest uint64
		any := false
		for range 5000 {
			var c uint64
			switch r.IntN(4) {
			case 0:
				c = highest + uint64(r.IntN(200)) // forward
			case 1:
				c = highest + uint64(r.IntN(3*ReplayWindow)) // big jumps
			default:
				c = highest - min(highest, uint64(r.IntN(ReplayWindow+300))) // behind
			}
			inWindow := !any || c > highest || highest-c < ReplayWindow
			want := !seen[c] && inWindow
			// The lock-free pre-check refuses exactly what is below the window.
			if got := f.mayAccept(c); got != inWindow {
				t.Fatalf("trial %d: mayAccept(%d) with highest %d = %v, want %v", trial, c, highest, got, inWindow)
			}
			if got := f.Accept(c); got != want {
				t.Fatalf("trial %d: Accept(%d) with highest %d = %v, want %v", trial, c, highest, got, want)
			}
			if want {
				seen[c] = true
				if !any || c > highest {
					highest = c
				}
				any = true
			}
		}
	}
}

func TestLimits(t *testing.T) {
	a, _ := pair(t, wire.SuiteAES256GCM)
	buf := make([]byte, 64)
	if _, err := a.Seal(buf, 10, t0.Add(RejectAfterTime)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired keypair sealed: %v", err)
	}
	if !a.NeedsRekey(t0.Add(RekeyAfterTime)) || a.NeedsRekey(t0) {
		t.Fatal("rekey timing wrong")
	}
	a.counter.Store(RejectAfterMessages)
	if _, err := a.Seal(buf, 10, t0); !errors.Is(err, ErrExhausted) {
		t.Fatalf("exhausted counter sealed: %v", err)
	}
	if !a.Expired(t0) {
		t.Fatal("exhausted keypair not reported expired")
	}
}

func TestSealOpenDoNotAllocate(t *testing.T) {
	a, b := pair(t, wire.SuiteAES256GCM)
	buf := make([]byte, wire.DataOverhead+1400)
	allocs := testing.AllocsPerRun(1000, func() {
		n, err := a.Seal(buf, 1400, t0)
		if err != nil {
			t.Fatal(err)
		}
		_, counter, _ := wire.ParseDataHeader(buf[:n])
		if _, err := b.Open(buf[:n], counter, t0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("seal+open allocate %.1f times per packet", allocs)
	}
}

func FuzzOpen(f *testing.F) {
	a, _ := pair(f, wire.SuiteAES256GCM)
	f.Add(seal(f, a, []byte("hello")))
	f.Add(make([]byte, wire.DataOverhead))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		_, b := pair(t, wire.SuiteAES256GCM)
		recv, counter, err := wire.ParseDataHeader(pkt)
		if err != nil {
			return
		}
		_ = recv
		// Random bytes never authenticate; a valid seed opens exactly once.
		if _, err := b.Open(bytes.Clone(pkt), counter, t0); err == nil {
			if _, err := b.Open(bytes.Clone(pkt), counter, t0); err == nil {
				t.Fatal("same packet opened twice")
			}
		}
	})
}

func benchSeal(b *testing.B, suite uint8) {
	a, _ := pair(b, suite)
	buf := make([]byte, wire.DataOverhead+1400)
	b.SetBytes(1400)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Seal(buf, 1400, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func benchOpen(b *testing.B, suite uint8) {
	a, r := pair(b, suite)
	const n = 4096
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = seal(b, a, make([]byte, 1400))
	}
	work := make([]byte, len(pkts[0]))
	b.SetBytes(1400)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == n { // fresh keypair: the window has seen these counters
			b.StopTimer()
			_, r = pair(b, suite)
			i = 0
			b.StartTimer()
		}
		copy(work, pkts[i])
		if _, err := r.Open(work, uint64(i), t0); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkSeal1400(b *testing.B) {
	b.Run("aes256gcm", func(b *testing.B) { benchSeal(b, wire.SuiteAES256GCM) })
	b.Run("chacha20poly1305", func(b *testing.B) { benchSeal(b, wire.SuiteChaCha20Poly1305) })
}

func BenchmarkOpen1400(b *testing.B) {
	b.Run("aes256gcm", func(b *testing.B) { benchOpen(b, wire.SuiteAES256GCM) })
	b.Run("chacha20poly1305", func(b *testing.B) { benchOpen(b, wire.SuiteChaCha20Poly1305) })
}

// BenchmarkRelayLink is the link layer of one relayed packet: what a relay
// does per packet (open from the previous hop, seal for the next), against a
// 1,388-byte end-to-end packet it leaves alone.
func BenchmarkRelayLink(b *testing.B) {
	for _, suite := range []uint8{wire.SuiteAES256GCM, wire.SuiteChaCha20Poly1305} {
		b.Run(suiteName(suite), func(b *testing.B) {
			s, r := pair(b, suite)
			pkt := make([]byte, wire.RelayHeaderSize+wire.DataHeaderSize+1388+wire.TagSize)
			var ad RelayScratch
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := s.SealRelay(pkt, &ad, t0); err != nil {
					b.Fatal(err)
				}
				if err := r.OpenRelay(pkt, uint64(i), &ad, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func suiteName(s uint8) string {
	if s == wire.SuiteAES256GCM {
		return "aes256gcm"
	}
	return "chacha20poly1305"
}
