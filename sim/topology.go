package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"
)

// edge is an undirected simulated link.
type edge struct {
	a, b  int32
	delay int64   // one-way, ns
	up    bool    // the cable: false while cut
	loss  float64 // extra per-message loss while degraded (lossy failures)
	quar  bool    // one end quarantined the other: nothing crosses it
}

// buildTopology returns the links of a line, grid or random topology. Delays
// are spread over [delay/2, 3·delay/2] so shortest paths are mostly unique.
func buildTopology(kind string, n int, degree float64, delay time.Duration, rng *rand.Rand) ([]edge, error) {
	spread := func() int64 { return int64(delay)/2 + rng.Int64N(int64(delay)+1) }
	var es []edge
	add := func(a, b int, d int64) { es = append(es, edge{a: int32(a), b: int32(b), delay: d, up: true}) }
	switch kind {
	case "line":
		for i := 0; i+1 < n; i++ {
			add(i, i+1, spread())
		}
	case "grid":
		w := int(math.Ceil(math.Sqrt(float64(n))))
		for i := 0; i < n; i++ {
			if (i+1)%w != 0 && i+1 < n {
				add(i, i+1, spread())
			}
			if i+w < n {
				add(i, i+w, spread())
			}
		}
	case "random":
		return randomGeometric(n, degree, delay, rng), nil
	default:
		return nil, fmt.Errorf("sim: unknown topology %q (want line, grid or random)", kind)
	}
	return es, nil
}

// randomGeometric places nodes uniformly in the unit square and links those
// closer than the radius that gives the wanted mean degree, the way radio and
// metro meshes look; link delay grows with distance. Components are then
// joined by their closest pairs, so the graph is connected.
func randomGeometric(n int, degree float64, delay time.Duration, rng *rand.Rand) []edge {
	if n < 2 {
		return nil
	}
	x, y := make([]float64, n), make([]float64, n)
	for i := range x {
		x[i], y[i] = rng.Float64(), rng.Float64()
	}
	r := math.Sqrt(degree / (math.Pi * float64(n)))
	cells := max(1, int(1/r))
	cell := func(v float64) int { return min(cells-1, int(v*float64(cells))) }
	grid := make(map[[2]int][]int)
	for i := range x {
		k := [2]int{cell(x[i]), cell(y[i])}
		grid[k] = append(grid[k], i)
	}
	d := func(i, j int) float64 { return math.Hypot(x[i]-x[j], y[i]-y[j]) }
	lat := func(dist float64) int64 { return int64(float64(delay) * (0.5 + min(dist/r, 2)/2)) }
	var es []edge
	uf := newUnionFind(n)
	for i := 0; i < n; i++ {
		cx, cy := cell(x[i]), cell(y[i])
		for dx := -1; dx <= 1; dx++ {
			for dy := -1; dy <= 1; dy++ {
				for _, j := range grid[[2]int{cx + dx, cy + dy}] {
					if j > i && d(i, j) <= r {
						es = append(es, edge{a: int32(i), b: int32(j), delay: lat(d(i, j)), up: true})
						uf.union(i, j)
					}
				}
			}
		}
	}
	// Join components: each non-main component links its node closest to a
	// node of another component (O(n·k), k components; few in practice).
	for {
		comps := map[int][]int{}
		for i := 0; i < n; i++ {
			comps[uf.find(i)] = append(comps[uf.find(i)], i)
		}
		if len(comps) == 1 {
			break
		}
		roots := make([]int, 0, len(comps))
		for k := range comps {
			roots = append(roots, k)
		}
		sort.Ints(roots)
		small := roots[0]
		for _, k := range roots {
			if len(comps[k]) < len(comps[small]) {
				small = k
			}
		}
		bi, bj, bd := -1, -1, math.Inf(1)
		for _, i := range comps[small] {
			for j := 0; j < n; j++ {
				if uf.find(j) != small {
					if dd := d(i, j); dd < bd {
						bi, bj, bd = i, j, dd
					}
				}
			}
		}
		es = append(es, edge{a: int32(min(bi, bj)), b: int32(max(bi, bj)), delay: lat(bd), up: true})
		uf.union(bi, bj)
	}
	return es
}

type unionFind []int

func newUnionFind(n int) unionFind {
	u := make(unionFind, n)
	for i := range u {
		u[i] = i
	}
	return u
}

func (u unionFind) find(i int) int {
	for u[i] != i {
		u[i] = u[u[i]]
		i = u[i]
	}
	return i
}

func (u unionFind) union(a, b int) { u[u.find(a)] = u.find(b) }

// Failure is one scheduled fault. Kind is "link", "node", "random" (that many
// random links), "randnode" (that many random nodes), "lossy" (a degraded
// link that loses Loss of the messages crossing it, each way; Busy: the link
// most flows cross at At) or "forge" (node A sends forged adverts). A and B
// name the link (node indices) or A the node; Count is for the random kinds.
// Until, if not zero, is when the link is restored, the node restarts, the
// loss ends or the forging stops.
type Failure struct {
	Kind  string
	A, B  int
	Count int
	Loss  float64
	Busy  bool
	At    time.Duration
	Until time.Duration
}

func (f Failure) String() string {
	var s string
	switch f.Kind {
	case "link":
		s = fmt.Sprintf("link:%d-%d", f.A, f.B)
	case "node":
		s = fmt.Sprintf("node:%d", f.A)
	case "forge":
		s = fmt.Sprintf("forge:%d", f.A)
	case "lossy":
		if f.Busy {
			s = "lossy:busy"
		} else {
			s = fmt.Sprintf("lossy:%d-%d", f.A, f.B)
		}
		s += "=" + strconv.FormatFloat(f.Loss, 'g', -1, 64)
	default:
		s = fmt.Sprintf("%s:%d", f.Kind, f.Count)
	}
	s += "@" + f.At.String()
	if f.Until > 0 {
		s += "-" + f.Until.String()
	}
	return s
}

// ParseFailures parses a failure spec: comma-separated items
//
//	link:A-B@T[-T2]   cut the link between nodes A and B at T (restore at T2)
//	node:N@T[-T2]     crash node N at T (restart it, with a fresh router, at T2)
//	random:K@T[-T2]   cut K random live links at T (restore them at T2)
//	randnode:K@T[-T2] crash K random live nodes at T (restart them at T2)
//	lossy:A-B=P@T[-T2] the link between A and B loses a fraction P (0 < P < 1)
//	                  of the messages crossing it, each way, from T (until T2):
//	                  degraded, not cut
//	lossy:busy=P@T[-T2] the same for the link that the most data flows cross at T
//	forge:N@T[-T2]    node N sends its neighbours forged adverts (another
//	                  origin's links, signed with its own key) from T (until T2)
//
// Times are Go durations ("20s", "1m30s", "500ms"); nodes are numbered from 0.
func ParseFailures(spec string) ([]Failure, error) {
	var fs []Failure
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		f, err := parseFailure(item)
		if err != nil {
			return nil, fmt.Errorf("sim: failure %q: %w", item, err)
		}
		fs = append(fs, f)
	}
	return fs, nil
}

func parseFailure(item string) (Failure, error) {
	kind, rest, ok := strings.Cut(item, ":")
	if !ok {
		return Failure{}, fmt.Errorf("want KIND:TARGET@TIME")
	}
	target, when, ok := strings.Cut(rest, "@")
	if !ok {
		return Failure{}, fmt.Errorf("missing @TIME")
	}
	f := Failure{Kind: kind}
	atS, untilS, hasUntil := strings.Cut(when, "-")
	var err error
	if f.At, err = time.ParseDuration(atS); err != nil || f.At < 0 {
		return Failure{}, fmt.Errorf("bad time %q", atS)
	}
	if hasUntil {
		if f.Until, err = time.ParseDuration(untilS); err != nil || f.Until <= f.At {
			return Failure{}, fmt.Errorf("bad end time %q (must be after %v)", untilS, f.At)
		}
	}
	num := func(s string) (int, error) {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("bad number %q", s)
		}
		return v, nil
	}
	// link parses "A-B" into f.A and f.B.
	link := func(s, want string) error {
		a, b, ok := strings.Cut(s, "-")
		if !ok {
			return fmt.Errorf("want %s", want)
		}
		if f.A, err = num(a); err != nil {
			return err
		}
		if f.B, err = num(b); err != nil {
			return err
		}
		if f.A == f.B {
			return fmt.Errorf("a link joins two different nodes")
		}
		return nil
	}
	switch kind {
	case "link":
		if err := link(target, "link:A-B"); err != nil {
			return Failure{}, err
		}
	case "node":
		if f.A, err = num(target); err != nil {
			return Failure{}, err
		}
	case "random", "randnode":
		if f.Count, err = num(target); err != nil || f.Count == 0 {
			return Failure{}, fmt.Errorf("bad count %q", target)
		}
	case "forge":
		if f.A, err = num(target); err != nil {
			return Failure{}, err
		}
	case "lossy":
		ends, p, ok := strings.Cut(target, "=")
		if !ok {
			return Failure{}, fmt.Errorf("want lossy:A-B=P or lossy:busy=P")
		}
		if f.Loss, err = strconv.ParseFloat(p, 64); err != nil || !(f.Loss > 0 && f.Loss < 1) {
			return Failure{}, fmt.Errorf("bad loss %q (want 0 < P < 1)", p)
		}
		if ends == "busy" {
			f.Busy = true
			break
		}
		if err := link(ends, "lossy:A-B=P or lossy:busy=P"); err != nil {
			return Failure{}, err
		}
	default:
		return Failure{}, fmt.Errorf("unknown kind %q (want link, node, random, randnode, lossy or forge)", kind)
	}
	return f, nil
}
