package heal

import (
	"fmt"
	"slices"
)

// Assess is the node's health from its current symptoms: the worst severity
// among them (Healthy when there are none) and one reason per symptom, worst
// first, at most maxReasons (the last line then says how many more).
func Assess(syms []Symptom, maxReasons int) (State, []string) {
	state := Healthy
	order := make([]int, len(syms))
	for i, s := range syms {
		order[i] = i
		if s.Severity.worse(state) {
			state = s.Severity
		}
	}
	if state == Healthy && len(syms) > 0 {
		state = Degraded // a symptom without a valid severity still counts
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return syms[b].Severity.level() - syms[a].Severity.level()
	})
	var reasons []string
	for n, i := range order {
		if maxReasons > 0 && n == maxReasons-1 && len(order) > maxReasons {
			reasons = append(reasons, fmt.Sprintf("and %d more", len(order)-n))
			break
		}
		reasons = append(reasons, syms[i].Reason)
	}
	return state, reasons
}
