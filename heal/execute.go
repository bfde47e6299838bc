package heal

import (
	"errors"
	"fmt"
)

// Executor is what the node implements to carry out actions: the E of MAPE-K
// lives in the node, the core only decides. Methods should return promptly
// (queue the work if it is slow); the error is the outcome the loop records.
type Executor interface {
	// Reroute stops routing over the direct link to peer (AvoidLink: raise
	// its metric or mark it down) or through peer at all (AvoidNode).
	Reroute(peer string, scope Scope) error
	// Restore lifts an earlier Reroute once its incident is over.
	Restore(peer string, scope Scope) error
	// Rekey starts a fresh handshake with peer.
	Rekey(peer string) error
	// SwitchTransport moves peer to its next transport (UDP, TLS, WebSocket).
	SwitchTransport(peer string) error
	// LowerMTU assumes an underlay path MTU of mtu towards peer ("" for
	// every peer); the node derives the overlay MTU from it.
	LowerMTU(peer string, mtu int) error
	// Quarantine stops accepting traffic from peer locally and signs and
	// gossips the report; mesh-wide quarantine takes f+1 such reports or a
	// control-plane decision.
	Quarantine(peer string, r Report) error
	// Alert tells the operator (log, heartbeat, health API).
	Alert(inc Incident)
}

// ErrUnknownAction is returned by Execute for an action type it does not know.
var ErrUnknownAction = errors.New("heal: unknown action type")

// Execute carries out one action through ex and returns the outcome to hand
// to Loop.Outcome.
func Execute(ex Executor, a Action) error {
	switch a.Type {
	case ActReroute:
		return ex.Reroute(a.Peer, a.Scope)
	case ActRestore:
		return ex.Restore(a.Peer, a.Scope)
	case ActRekey:
		return ex.Rekey(a.Peer)
	case ActSwitchTransport:
		return ex.SwitchTransport(a.Peer)
	case ActLowerMTU:
		return ex.LowerMTU(a.Peer, a.MTU)
	case ActQuarantine:
		var r Report
		if a.Report != nil {
			r = *a.Report
		}
		return ex.Quarantine(a.Peer, r)
	case ActAlert:
		var inc Incident
		if a.About != nil {
			inc = *a.About
		}
		ex.Alert(inc)
		return nil
	}
	return fmt.Errorf("%w %q", ErrUnknownAction, a.Type)
}
