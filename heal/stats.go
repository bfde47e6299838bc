package heal

import (
	"math"
	"slices"
)

// zScale makes the MAD-based z-score comparable to a standard z-score for
// normal data: MAD ≈ 0.6745·σ, so 0.6745·(x−median)/MAD ≈ (x−μ)/σ
// (Iglewicz and Hoaglin's "modified z-score").
const zScale = 0.6745

// RobustZ is the modified z-score 0.6745·(x−median)/max(mad, floor). The floor
// keeps a link that never varied (MAD 0) from turning every tiny change into
// an infinite score.
func RobustZ(x, median, mad, floor float64) float64 {
	d := max(mad, floor)
	if !(d > 0) {
		switch {
		case x > median:
			return math.MaxFloat64
		case x < median:
			return -math.MaxFloat64
		}
		return 0
	}
	return finite(zScale * (x - median) / d)
}

// Median returns the median of xs (0 for none), sorting xs in place.
func Median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	slices.Sort(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return xs[n/2-1]/2 + xs[n/2]/2
}

// MAD returns the median absolute deviation of xs from median, overwriting xs.
func MAD(xs []float64, median float64) float64 {
	for i, x := range xs {
		xs[i] = math.Abs(x - median)
	}
	return Median(xs)
}

// Baseline is a sliding window of one metric's recent normal values, with its
// median and MAD computed on demand and cached until the next Add. Median and
// MAD rather than mean and standard deviation: half the window can be outliers
// (a burst of loss, a route flap) before they move, so one bad minute does not
// redefine normal.
type Baseline struct {
	buf     []float64 // ring, len ≤ size
	scratch []float64
	next    int
	size    int
	med     float64
	mad     float64
	dirty   bool
}

// NewBaseline returns an empty window of size values (at least 1).
func NewBaseline(size int) *Baseline {
	b := &Baseline{}
	b.init(size)
	return b
}

func (b *Baseline) init(size int) {
	b.size = max(size, 1)
}

// Add appends x, dropping the oldest value when the window is full.
func (b *Baseline) Add(x float64) {
	if len(b.buf) < b.size {
		b.buf = append(b.buf, x)
	} else {
		b.buf[b.next] = x
		b.next = (b.next + 1) % b.size
	}
	b.dirty = true
}

// Len is the number of values in the window.
func (b *Baseline) Len() int { return len(b.buf) }

// Stats returns the window's median and MAD (zeros when empty).
func (b *Baseline) Stats() (median, mad float64) {
	if b.dirty {
		b.scratch = append(b.scratch[:0], b.buf...)
		b.med = Median(b.scratch)
		b.mad = MAD(b.scratch, b.med)
		b.dirty = false
	}
	return b.med, b.mad
}

// ring keeps the last few values of a metric, for the "current" value tested
// against the baseline: the median of the last Recent samples, so a single
// spike is not an incident but two bad samples out of three are.
type ring struct {
	buf  []float64
	next int
	size int
}

func (r *ring) add(x float64) {
	if r.size <= 0 {
		r.size = 1
	}
	if len(r.buf) < r.size {
		r.buf = append(r.buf, x)
		return
	}
	r.buf[r.next] = x
	r.next = (r.next + 1) % r.size
}

func (r *ring) median() float64 {
	var tmp [16]float64
	s := append(tmp[:0], r.buf...)
	return Median(s)
}

// finite clamps ±Inf to ±MaxFloat64 and NaN to 0, so evidence always encodes
// as JSON.
func finite(x float64) float64 {
	switch {
	case math.IsNaN(x):
		return 0
	case math.IsInf(x, 1):
		return math.MaxFloat64
	case math.IsInf(x, -1):
		return -math.MaxFloat64
	}
	return x
}

// anomaly tests value x against a baseline with median med and MAD mad:
// z ≥ zth and a rise of at least MinDelta and MinRatio·median.
func anomaly(x, med, mad float64, mc MetricConfig, zth float64) (z float64, bad bool) {
	floor := max(mc.MADFloor, mc.RelFloor*math.Abs(med))
	z = RobustZ(x, med, mad, floor)
	rise := x - med
	return z, z >= zth && rise >= mc.MinDelta && rise >= mc.MinRatio*med
}
