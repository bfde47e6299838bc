package heal_test

import (
	"fmt"
	"time"

	"github.com/x0tta6bl4/x0t/heal"
)

// printer is a stand-in for the node's Executor.
type printer struct{}

func (printer) Reroute(peer string, s heal.Scope) error {
	fmt.Println("reroute around", peer, s)
	return nil
}
func (printer) Restore(peer string, s heal.Scope) error {
	fmt.Println("restore", peer, s)
	return nil
}
func (printer) Rekey(peer string) error           { fmt.Println("rekey", peer); return nil }
func (printer) SwitchTransport(peer string) error { fmt.Println("switch", peer); return nil }
func (printer) LowerMTU(peer string, mtu int) error {
	fmt.Println("lower MTU", peer, mtu)
	return nil
}
func (printer) Quarantine(peer string, r heal.Report) error {
	fmt.Println("quarantine", peer)
	return nil
}
func (printer) Alert(inc heal.Incident) { fmt.Println("alert:", inc.Symptoms[0].Reason) }

// The node feeds the loop what link monitoring measured, steps it once a
// second with Tick (Step, then Execute and Outcome for each action), and
// serves Health and Incidents on its local API.
func Example() {
	loop := heal.New(heal.Config{Self: "self-id"})
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 45 {
		now := start.Add(time.Duration(i) * time.Second)
		loss := 0.0
		if i >= 20 && i < 30 {
			loss = 0.3
		}
		loop.Observe(heal.Observation{Time: now, Links: []heal.LinkSample{
			{Peer: "beta", Up: true, RTT: 20 * time.Millisecond, Loss: loss},
			{Peer: "gamma", Up: true, RTT: 30 * time.Millisecond},
		}})
		loop.Tick(now, printer{})
		if i == 25 {
			h := loop.Health()
			fmt.Println(h.State, h.Reasons)
		}
	}
	inc := loop.Incidents(1)[0]
	fmt.Println(inc.Kind, inc.Subject, "worked:", inc.Worked, "open:", inc.Open)
	// Output:
	// reroute around beta link
	// degraded [link to beta: loss 30% (baseline 0%)]
	// restore beta link
	// link-loss beta worked: reroute open: false
}
