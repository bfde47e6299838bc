package route

import (
	"math"
	"math/bits"
	"time"
)

// Metric function parameters (docs/routing.md §6).
const (
	// HopCost is added to every link's RTT, in µs: each relay costs work and
	// is one more thing that can fail, so among near-equal paths the one with
	// fewer hops wins, and sub-millisecond LAN links do not look free.
	HopCost = 100
	// LossWeight scales loss above LossFloor: 10 points of loss double
	// the metric. Loss hurts TCP far more than the RTT it adds.
	LossWeight = 10
	// LossFloor is the loss that costs nothing: below it, differences
	// between links are mostly sampling noise (256 probes), and following
	// them would make routes flap.
	LossFloor = 0.02
)

// Metric turns a link's smoothed RTT and loss ratio (0..1) into a link metric:
//
//	m = quantize((rtt_µs + HopCost) × (1 + LossWeight × max(0, loss − LossFloor)))
//
// quantized to 4 significant bits (8 steps per doubling, rounding to nearest),
// clamped to [1, MaxMetric]. Quantizing absorbs measurement noise below about
// 6%, so jitter alone does not change the metric; Router's hysteresis absorbs
// the rest.
func Metric(rtt time.Duration, loss float64) uint32 {
	if rtt < 0 {
		rtt = 0
	}
	if !(loss >= 0) { // also NaN
		loss = 0
	}
	if loss > 1 {
		loss = 1
	}
	m := (float64(rtt.Microseconds()) + HopCost) * (1 + LossWeight*max(0, loss-LossFloor))
	if m >= MaxMetric {
		return MaxMetric
	}
	return quantize(uint32(math.Round(m)))
}

// quantize rounds m to its 4 most significant bits.
func quantize(m uint32) uint32 {
	if m == 0 {
		return 1
	}
	n := bits.Len32(m)
	if n <= 4 {
		return m
	}
	shift := uint(n - 4)
	q := (m + 1<<(shift-1)) >> shift << shift
	if q > MaxMetric {
		q = MaxMetric
	}
	return q
}
