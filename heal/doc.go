// Package heal is the MAPE-K loop every node runs: Monitor, Analyze, Plan,
// Execute over a shared Knowledge base, written as explicit stages.
//
// The package is a pure core. It never reads the clock (every call takes the
// time), starts no goroutine, opens no socket, logs nothing and keeps no
// global state; it returns what it decided instead of doing it. The node agent
// and the simulator feed it the same observations and carry out the actions it
// returns, so the healing logic is tested, and runs in the simulator, exactly
// as it runs on a node.
//
// The stages, each usable and tested on its own:
//
//   - Monitor (Monitor.Observe): bounded sliding windows of link samples (RTT,
//     loss, jitter, up/down per neighbour and transport), per-peer failure
//     counters (handshakes, authenticators, replays, forged adverts), path
//     reachability and node metrics.
//   - Analyze (Analyze): robust per-link baselines (median and MAD), anomaly
//     scores, and a guess at what is at fault (a link, a neighbour node, or
//     this node), returned as Symptoms with their evidence.
//   - Plan (Plan): for each open incident, the next action from reroute,
//     rekey, switch transport, lower MTU, quarantine and alert, ordered by what
//     worked for this kind of incident before and never repeating a failed
//     action before its backoff ends.
//   - Execute (Execute, Executor): the node carries the actions out and
//     reports each outcome (Loop.Outcome); the loop then checks whether the
//     symptom went away and credits or blames the action.
//   - Knowledge (Knowledge): the incident log and per-(kind, action) success
//     scores with exponential decay.
//
// Loop glues the stages: Observe feeds the monitor, Step runs one
// Monitor-Analyze-Plan pass and returns the actions, Outcome closes the
// Execute step, Health and Incidents expose the state. docs/healing.md
// describes the statistics, the root-cause rules and the scoring.
package heal
