package route

import (
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
)

// gridRouter returns node 0's router holding the adverts of a w×w grid.
func gridRouter(b *testing.B, w int) *Router {
	now := time.Unix(1_800_000_000, 0)
	r := New(Config{
		Self:   nid(0),
		Sign:   func(label string, msg []byte) []byte { return fakeSig(nid(0), label, msg) },
		Verify: fakeVerify(nil),
		Now:    func() time.Time { return now },
	})
	links := func(i int) []Link {
		var ls []Link
		x, y := i%w, i/w
		for _, d := range [][2]int{{-1, 0}, {1, 0}, {0, -1}, {0, 1}} {
			if nx, ny := x+d[0], y+d[1]; nx >= 0 && nx < w && ny >= 0 && ny < w {
				ls = append(ls, Link{nid(ny*w + nx), uint32(1000 + (i*7+ny*w+nx)%300)})
			}
		}
		// sorted by NodeID: nid orders by index
		for a := 1; a < len(ls); a++ {
			for c := a; c > 0 && cmpID(&ls[c].Neighbour, &ls[c-1].Neighbour) < 0; c-- {
				ls[c], ls[c-1] = ls[c-1], ls[c]
			}
		}
		return ls
	}
	for _, l := range links(0) {
		r.LinkUp(l.Neighbour, l.Metric)
	}
	for i := 1; i < w*w; i++ {
		now = now.Add(time.Millisecond)
		body, err := EncodeLSABody(LSA{Origin: nid(i), Seq: 1, Links: links(i)})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Receive(nid(1), append(body, fakeSig(nid(i), SignLabel, body)...)); err != nil {
			b.Fatal(err)
		}
	}
	r.runSPF(now)
	if r.Table().Len() != w*w-1 {
		b.Fatalf("%d routes", r.Table().Len())
	}
	return r
}

// BenchmarkSPF1024 is one full path computation (SPF from the router and
// from each of its neighbours, alternates) on a 32×32 grid.
func BenchmarkSPF1024(b *testing.B) {
	r := gridRouter(b, 32)
	now := time.Unix(1_900_000_000, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.runSPF(now)
	}
}

func BenchmarkLookup(b *testing.B) {
	tb := gridRouter(b, 32).Table()
	up := func(identity.NodeID) bool { return true }
	dst := nid(1023)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := tb.NextHop(dst, identity.NodeID{}, up); !ok {
			b.Fatal("no route")
		}
	}
}
