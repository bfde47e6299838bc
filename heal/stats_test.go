package heal

import (
	"math"
	"testing"
)

func TestMedianMAD(t *testing.T) {
	tests := []struct {
		name      string
		in        []float64
		med, madv float64
	}{
		{"empty", nil, 0, 0},
		{"one", []float64{7}, 7, 0},
		{"odd", []float64{3, 1, 2}, 2, 1},
		{"even", []float64{4, 1, 3, 2}, 2.5, 1},
		{"outlier does not move it", []float64{10, 10, 11, 9, 10, 1000}, 10, 0.5},
		{"negative", []float64{-1, -3, -2}, -2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			xs := append([]float64(nil), tt.in...)
			m := Median(xs)
			if m != tt.med {
				t.Errorf("Median = %v, want %v", m, tt.med)
			}
			if d := MAD(xs, m); d != tt.madv {
				t.Errorf("MAD = %v, want %v", d, tt.madv)
			}
		})
	}
}

func TestRobustZ(t *testing.T) {
	tests := []struct {
		name               string
		x, med, mad, floor float64
		want               float64
	}{
		{"one MAD above", 12, 10, 2, 0.1, 0.6745},
		{"floor replaces a zero MAD", 0.3, 0, 0, 0.01, 20.235},
		{"floor below MAD is ignored", 20, 10, 5, 1, 1.349},
		{"below the median is negative", 8, 10, 2, 0.1, -0.6745},
		{"at the median", 10, 10, 0, 0, 0},
		{"no spread and no floor", 11, 10, 0, 0, math.MaxFloat64},
		{"no spread and no floor, below", 9, 10, 0, 0, -math.MaxFloat64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RobustZ(tt.x, tt.med, tt.mad, tt.floor); math.Abs(got-tt.want) > 1e-9*math.Max(1, math.Abs(tt.want)) {
				t.Errorf("RobustZ(%v, %v, %v, %v) = %v, want %v", tt.x, tt.med, tt.mad, tt.floor, got, tt.want)
			}
		})
	}
}

func TestBaselineWindow(t *testing.T) {
	b := NewBaseline(3)
	if m, d := b.Stats(); m != 0 || d != 0 || b.Len() != 0 {
		t.Fatalf("empty baseline: %v %v %d", m, d, b.Len())
	}
	for _, x := range []float64{1, 2, 3} {
		b.Add(x)
	}
	if m, d := b.Stats(); m != 2 || d != 1 {
		t.Fatalf("Stats = %v, %v; want 2, 1", m, d)
	}
	b.Add(10) // evicts 1: window 2, 3, 10
	b.Add(11) // evicts 2: window 3, 10, 11
	if m, d := b.Stats(); m != 10 || d != 1 || b.Len() != 3 {
		t.Fatalf("after eviction Stats = %v, %v (len %d); want 10, 1 (len 3)", m, d, b.Len())
	}
}

func TestAnomaly(t *testing.T) {
	rtt := DefaultConfig().RTT
	loss := DefaultConfig().Loss
	tests := []struct {
		name        string
		x, med, mad float64
		mc          MetricConfig
		want        bool
	}{
		{"RTT doubles", 40, 20, 1, rtt, true},
		{"RTT +4ms: unusual but below MinDelta", 24, 20, 0.1, rtt, false},
		{"RTT +20% on a slow link: below MinRatio", 240, 200, 1, rtt, false},
		{"RTT +30% on a slow link", 260, 200, 1, rtt, true},
		{"noisy link: within its spread", 40, 20, 10, rtt, false},
		{"loss 0 to 30%", 0.3, 0, 0, loss, true},
		{"loss 0 to 2%: below MinDelta", 0.02, 0, 0, loss, false},
		{"loss drops", 0, 0.1, 0.01, loss, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := anomaly(tt.x, tt.med, tt.mad, tt.mc, 3.5); got != tt.want {
				t.Errorf("anomaly = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{pct(0.3), "30%"}, {pct(0), "0%"}, {pct(0.025), "2.5%"}, {pct(1), "100%"},
		{msec(180), "180ms"}, {msec(2.5), "2.5ms"}, {msec(3), "3ms"}, {msec(12.4), "12ms"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
