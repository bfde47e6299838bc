package node

import (
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/x0tta6bl4/x0t/heal"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/route"
)

// The node's MAPE-K loop (package heal) runs once a second on the control
// loop. Monitor: link samples from link monitoring, per-peer failure counters,
// the routing table's reach, drop counters. Analyze and Plan happen in heal.
// Execute: this file, acting on the router and sessions. Knowledge: heal's
// incident log, which `x0t health` shows and heartbeats carry to the control
// plane.

// healInterval is the MAPE-K period; heal's defaults assume about a second.
const healInterval = time.Second

// peerFaults are the per-peer failure counters heal differences.
type peerFaults struct {
	handshakeFailures atomic.Uint64 // our initiations to the peer that went unanswered
	badAEAD           atomic.Uint64
	replays           atomic.Uint64
	forged            atomic.Uint64
	flooded           atomic.Uint64
}

func (n *Node) initHeal() {
	n.healer = heal.New(heal.Config{
		Self: n.ID().String(),
		Name: func(id string) string {
			if name, ok := n.names.Load().(map[string]string)[id]; ok {
				return name
			}
			return id[:min(8, len(id))]
		},
	})
	n.names.Store(map[string]string{})
}

// healTick runs one MAPE-K pass.
func (n *Node) healTick(now time.Time) {
	peers := n.peers.Load()
	names := make(map[string]string, len(peers.byID))
	o := heal.Observation{Time: now}
	for id, p := range peers.byID {
		ids := id.String()
		names[ids] = p.Name()
		if m := n.mesh.links[id]; m != nil {
			st := m.link.Stats()
			o.Links = append(o.Links, heal.LinkSample{Peer: ids, Up: m.up, RTT: m.link.SRTT(), Jitter: st.Jitter, Loss: m.link.Loss()})
		}
		f := &p.faults
		o.Peers = append(o.Peers, heal.PeerCounters{Peer: ids,
			HandshakeFailures: f.handshakeFailures.Load(), BadAEAD: f.badAEAD.Load(), Replays: f.replays.Load(),
			ForgedAdverts: f.forged.Load(), FloodedAdverts: f.flooded.Load()})
		ps := heal.PathSample{Dest: ids}
		if r, ok := n.mesh.table.Load().Lookup(id); ok {
			ps.Reachable = true
			ps.Via = r.Next.String()
		} else if p.direct() && p.current.Load() != nil {
			ps.Reachable, ps.Via = true, ids
		}
		o.Paths = append(o.Paths, ps)
	}
	st := n.stats.Snapshot()
	o.Node = &heal.NodeSample{Drops: map[string]uint64{
		"no-route": st["DropNoRoute"], "queue-full": st["DropQueueFull"], "hop-limit": st["DropHopLimit"],
		"auth": st["DropAuth"], "replay": st["DropReplay"], "policy": st["DropPolicy"],
	}}
	n.names.Store(names)
	n.healer.Observe(o)
	for _, a := range n.healer.Tick(now, healExecutor{n}) {
		n.stats.countHealAction(a.Type)
		n.log.Info("self-healing action", "action", a.Type, "peer", names[a.Peer], "kind", a.Kind)
	}
}

// Health returns the node's health, symptoms, recent incidents and what the
// loop learned.
func (n *Node) Health(limit int) heal.Snapshot { return n.healer.Snapshot(limit) }

// healExecutor carries out heal's actions on the node (on the control loop).
type healExecutor struct{ n *Node }

var errUnsupported = errors.New("node: not available on this node")

func (e healExecutor) peer(id string) (*Peer, error) {
	var nid identity.NodeID
	if b, err := hex.DecodeString(id); err != nil || len(b) != len(nid) {
		return nil, fmt.Errorf("node: bad peer id %q", id)
	} else {
		copy(nid[:], b)
	}
	p := e.n.peers.Load().byID[nid]
	if p == nil {
		return nil, fmt.Errorf("node: no peer %s", id)
	}
	return p, nil
}

// avoidFactor is how much more a link costs while the MAPE-K loop avoids it:
// enough that any other path wins, while the link stays in the graph as a last
// resort, so avoiding it can never cut the mesh in two (a bulk transfer that
// fills a queue raises a link's RTT; taking the link out entirely would then
// partition a mesh whose only path it is).
const avoidFactor = 64

// Reroute makes the direct link to the peer a last resort here (both scopes:
// a node decides only what it sends through its own links). Link monitoring
// keeps probing it, so heal sees when it recovers. A link that is already down
// is left alone: routing avoids it anyway, and it must be free to carry traffic
// again the moment it comes back.
func (e healExecutor) Reroute(peer string, _ heal.Scope) error {
	p, err := e.peer(peer)
	if err != nil {
		return err
	}
	m := e.n.mesh.links[p.id]
	if m == nil || !m.up {
		return nil
	}
	m.avoided = true
	m.advertise = min(linkMetric(m.link)*avoidFactor, route.MaxMetric)
	e.n.mesh.router.SetMetric(p.id, m.advertise)
	e.n.flushRouter(e.n.now())
	return nil
}

// Restore gives an avoided link its measured cost back.
func (e healExecutor) Restore(peer string, _ heal.Scope) error {
	p, err := e.peer(peer)
	if err != nil {
		return err
	}
	m := e.n.mesh.links[p.id]
	if m == nil || !m.avoided {
		return nil
	}
	m.avoided = false
	if m.up {
		m.advertise = linkMetric(m.link)
		e.n.mesh.router.SetMetric(p.id, m.advertise)
	}
	e.n.flushRouter(e.n.now())
	return nil
}

// Rekey starts a new handshake with the peer.
func (e healExecutor) Rekey(peer string) error {
	p, err := e.peer(peer)
	if err != nil {
		return err
	}
	e.n.initiate(p, e.n.now())
	return nil
}

// SwitchTransport: this node has one transport (UDP) so far.
func (e healExecutor) SwitchTransport(string) error {
	return fmt.Errorf("%w: only the UDP transport is built", errUnsupported)
}

// LowerMTU: the overlay MTU is fixed for the device's lifetime so far.
func (e healExecutor) LowerMTU(string, int) error {
	return fmt.Errorf("%w: changing the MTU of a running device is not built", errUnsupported)
}

// Quarantine stops all traffic with the peer at this node (its certificate is
// refused here from now on). Mesh-wide quarantine needs reports from f+1
// nodes or a control-plane decision; the report is logged for that.
func (e healExecutor) Quarantine(peer string, r heal.Report) error {
	p, err := e.peer(peer)
	if err != nil {
		return err
	}
	e.n.log.Warn("quarantining peer", "peer", p.Name(), "id", p.id.Short(), "evidence", string(r.SigningBytes()))
	e.n.cfg.Trust.Revoke(p.id)
	e.n.removePeer(p)
	return nil
}

// Alert logs an incident that no action could address.
func (e healExecutor) Alert(inc heal.Incident) {
	e.n.log.Warn("self-healing alert", "incident", inc.ID, "kind", inc.Kind, "subject", inc.Subject)
}
