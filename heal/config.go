package heal

import (
	"math"
	"time"
)

// MetricConfig tunes anomaly detection for one link metric. A value is
// anomalous when its robust z-score reaches Config.ZThreshold and its rise
// over the median is at least MinDelta and at least MinRatio times the median:
// the z-score says "unusual for this link", the minimum rise says "large
// enough to matter", so a very steady link does not alarm on a tiny wobble.
type MetricConfig struct {
	MADFloor float64 // smallest MAD used in the z-score, in the metric's unit
	RelFloor float64 // MAD floor as a fraction of the median (noise grows with the value)
	MinDelta float64 // smallest rise over the median that counts, in the metric's unit
	MinRatio float64 // smallest rise as a fraction of the median
}

// Config tunes the loop. The zero value of any field means its default
// (DefaultConfig), so Config{} is a working configuration.
type Config struct {
	// Self is this node's ID, written into misbehaviour reports.
	Self string
	// Name maps a node ID to a display name for human-readable reasons; nil
	// shows IDs. It is called during Step with the loop's lock held, so it
	// must be a plain lookup that does not call back into the Loop.
	Name func(id string) string

	// Statistics (see docs/healing.md).
	Window     int           // baseline samples kept per metric (60)
	Recent     int           // latest samples whose median is tested (3)
	MinSamples int           // baseline samples needed before relative detection (10)
	ZThreshold float64       // robust z-score that makes a value anomalous (3.5)
	AdaptAfter time.Duration // a shift this long becomes the new baseline (10m)
	RTT        MetricConfig  // milliseconds
	Jitter     MetricConfig  // milliseconds
	Loss       MetricConfig  // fraction
	LossAlarm  float64       // loss that is a symptom whatever the baseline (0.10)

	// Counters: thresholds are counts within CounterWindow.
	CounterWindow      time.Duration // 60s
	AuthThreshold      uint64        // bad MACs + bad AEAD tags (10)
	ReplayThreshold    uint64        // replays: a flood, not the odd duplicate (1000)
	ForgeryThreshold   uint64        // forged adverts (3)
	HandshakeThreshold uint64        // failed handshakes (5)
	FloodThreshold     uint64        // rate-limited adverts (100)

	// Node load.
	CPUAlarm    float64 // CPU fraction (0.9)
	QueueAlarm  float64 // queue fill fraction (0.9)
	DropRateMin float64 // drop-rate rise, per second, that counts as an anomaly (10)

	// Root cause and health.
	LocalMinPeers       int     // neighbours needed to blame this node (3)
	LocalFraction       float64 // fraction of neighbours with a bad link that blames this node (0.75)
	CriticalUnreachable float64 // fraction of unreachable destinations that is critical (0.5)

	// Timing.
	StaleAfter     time.Duration // forget a link, peer or path not reported for this long (30s)
	ResolveHold    time.Duration // an incident resolves after its symptoms are gone this long (5s)
	VerifyAfter    time.Duration // judge an applied action this long after it was applied (10s)
	OutcomeTimeout time.Duration // an action without an outcome after this long timed out (30s)
	BackoffBase    time.Duration // first backoff after a failed action (30s)
	BackoffMax     time.Duration // longest backoff (10m)
	HalfLife       time.Duration // half-life of knowledge scores (24h)

	// Actions.
	LowMTU int // the underlay path MTU LowerMTU asks for (1280, the IPv6 minimum)

	// Bounds on memory.
	MaxLinks     int // links tracked (256)
	MaxPeers     int // peers with counters tracked (1024)
	MaxPaths     int // destinations tracked (4096)
	MaxIncidents int // closed incidents kept (256)
	MaxActions   int // actions kept per incident (32)
	MaxReasons   int // health reasons listed (16)
}

// DefaultConfig returns the defaults, documented on each Config field.
func DefaultConfig() Config {
	return Config{
		Window:     60,
		Recent:     3,
		MinSamples: 10,
		ZThreshold: 3.5,
		AdaptAfter: 10 * time.Minute,
		RTT:        MetricConfig{MADFloor: 1, RelFloor: 0.05, MinDelta: 5, MinRatio: 0.25},
		Jitter:     MetricConfig{MADFloor: 1, RelFloor: 0.10, MinDelta: 5, MinRatio: 0.5},
		Loss:       MetricConfig{MADFloor: 0.01, MinDelta: 0.03},
		LossAlarm:  0.10,

		CounterWindow:      time.Minute,
		AuthThreshold:      10,
		ReplayThreshold:    1000,
		ForgeryThreshold:   3,
		HandshakeThreshold: 5,
		FloodThreshold:     100,

		CPUAlarm:    0.9,
		QueueAlarm:  0.9,
		DropRateMin: 10,

		LocalMinPeers:       3,
		LocalFraction:       0.75,
		CriticalUnreachable: 0.5,

		StaleAfter:     30 * time.Second,
		ResolveHold:    5 * time.Second,
		VerifyAfter:    10 * time.Second,
		OutcomeTimeout: 30 * time.Second,
		BackoffBase:    30 * time.Second,
		BackoffMax:     10 * time.Minute,
		HalfLife:       24 * time.Hour,

		LowMTU: 1280,

		MaxLinks:     256,
		MaxPeers:     1024,
		MaxPaths:     4096,
		MaxIncidents: 256,
		MaxActions:   32,
		MaxReasons:   16,
	}
}

// withDefaults fills zero (or invalid) fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	posI := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	posF := func(v *float64, def float64) {
		if !(*v > 0) || math.IsInf(*v, 0) { // also NaN
			*v = def
		}
	}
	posD := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	posU := func(v *uint64, def uint64) {
		if *v == 0 {
			*v = def
		}
	}
	metric := func(m *MetricConfig, def MetricConfig) {
		if *m == (MetricConfig{}) {
			*m = def
			return
		}
		posF(&m.MADFloor, def.MADFloor) // a zero floor would divide by zero
		for _, f := range []*float64{&m.RelFloor, &m.MinDelta, &m.MinRatio} {
			if !(*f >= 0) || math.IsInf(*f, 0) {
				*f = 0
			}
		}
	}
	posI(&c.Window, d.Window)
	posI(&c.Recent, d.Recent)
	posI(&c.MinSamples, d.MinSamples)
	if c.MinSamples > c.Window {
		c.MinSamples = c.Window
	}
	posF(&c.ZThreshold, d.ZThreshold)
	posD(&c.AdaptAfter, d.AdaptAfter)
	metric(&c.RTT, d.RTT)
	metric(&c.Jitter, d.Jitter)
	metric(&c.Loss, d.Loss)
	posF(&c.LossAlarm, d.LossAlarm)
	posD(&c.CounterWindow, d.CounterWindow)
	posU(&c.AuthThreshold, d.AuthThreshold)
	posU(&c.ReplayThreshold, d.ReplayThreshold)
	posU(&c.ForgeryThreshold, d.ForgeryThreshold)
	posU(&c.HandshakeThreshold, d.HandshakeThreshold)
	posU(&c.FloodThreshold, d.FloodThreshold)
	posF(&c.CPUAlarm, d.CPUAlarm)
	posF(&c.QueueAlarm, d.QueueAlarm)
	posF(&c.DropRateMin, d.DropRateMin)
	posI(&c.LocalMinPeers, d.LocalMinPeers)
	posF(&c.LocalFraction, d.LocalFraction)
	posF(&c.CriticalUnreachable, d.CriticalUnreachable)
	posD(&c.StaleAfter, d.StaleAfter)
	posD(&c.ResolveHold, d.ResolveHold)
	posD(&c.VerifyAfter, d.VerifyAfter)
	posD(&c.OutcomeTimeout, d.OutcomeTimeout)
	posD(&c.BackoffBase, d.BackoffBase)
	posD(&c.BackoffMax, d.BackoffMax)
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = c.BackoffBase
	}
	posD(&c.HalfLife, d.HalfLife)
	posI(&c.LowMTU, d.LowMTU)
	posI(&c.MaxLinks, d.MaxLinks)
	posI(&c.MaxPeers, d.MaxPeers)
	posI(&c.MaxPaths, d.MaxPaths)
	posI(&c.MaxIncidents, d.MaxIncidents)
	posI(&c.MaxActions, d.MaxActions)
	posI(&c.MaxReasons, d.MaxReasons)
	return c
}

// name is the display name of a node ID.
func (c *Config) name(id string) string {
	if c.Name != nil {
		if n := c.Name(id); n != "" {
			return n
		}
	}
	return id
}
