package heal

import (
	"slices"
	"testing"
)

func TestAssess(t *testing.T) {
	d := func(r string) Symptom { return Symptom{Severity: Degraded, Reason: r} }
	c := func(r string) Symptom { return Symptom{Severity: Critical, Reason: r} }
	tests := []struct {
		name    string
		syms    []Symptom
		max     int
		state   State
		reasons []string
	}{
		{"no symptoms", nil, 16, Healthy, nil},
		{"one degraded", []Symptom{d("a")}, 16, Degraded, []string{"a"}},
		{"critical first", []Symptom{d("a"), c("b"), d("c")}, 16, Critical, []string{"b", "a", "c"}},
		{"bounded", []Symptom{d("a"), d("b"), d("c"), d("e")}, 3, Degraded, []string{"a", "b", "and 2 more"}},
		{"exactly at the bound", []Symptom{d("a"), d("b"), d("c")}, 3, Degraded, []string{"a", "b", "c"}},
		{"a symptom without severity still degrades", []Symptom{{Reason: "x"}}, 16, Degraded, []string{"x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, r := Assess(tt.syms, tt.max)
			if s != tt.state || !slices.Equal(r, tt.reasons) {
				t.Fatalf("Assess = %s %q, want %s %q", s, r, tt.state, tt.reasons)
			}
		})
	}
}
