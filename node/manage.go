package node

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/policy"
)

// Changes to the peer set and the policy arrive while packets flow (a netmap
// delta, a revocation). They run on the control loop, which owns handshake
// state, and publish new immutable tables for the packet loops.

// do runs fn on the control loop and waits for it; before Run, it runs fn at once.
func (n *Node) do(fn func()) {
	if !n.started.Load() {
		fn()
		return
	}
	done := make(chan struct{})
	select {
	case n.ops <- func() { fn(); close(done) }:
		<-done
	case <-n.closed:
	}
}

// SetPeers makes the peer set equal to pcs: new peers are added, peers whose
// certificate or endpoints changed are updated, peers not in pcs are removed
// with all their sessions. Certificates must already be verified by the caller
// (they come from a signed netmap) and are checked against the trust anchor again.
func (n *Node) SetPeers(pcs []PeerConfig) error {
	var err error
	n.do(func() { err = n.setPeers(pcs) })
	return err
}

func (n *Node) setPeers(pcs []PeerConfig) error {
	want := map[identity.NodeID]PeerConfig{}
	for _, pc := range pcs {
		if pc.Cert.ID() == n.ID() {
			continue
		}
		want[pc.Cert.ID()] = pc
	}
	for id, p := range n.peers.Load().byID {
		pc, keep := want[id]
		if !keep {
			n.removePeer(p)
			continue
		}
		old := p.cert.Load()
		if !sameIdentity(old, pc.Cert) {
			// Other addresses: a new peer as far as routing goes.
			n.removePeer(p)
			continue
		}
		if !old.Equal(pc.Cert) {
			if err := n.cfg.Trust.Verify(pc.Cert, n.now()); err != nil {
				return fmt.Errorf("node: peer %q: %w", pc.Cert.Name, err)
			}
			p.cert.Store(pc.Cert) // renewed or renamed: same keys and addresses
		}
		if !slices.Equal(p.configured, pc.Endpoints) {
			p.configured = pc.Endpoints
			if ep, ok := p.Endpoint(); (!ok || !slices.Contains(pc.Endpoints, ep)) && len(pc.Endpoints) > 0 {
				p.setEndpoint(pc.Endpoints[0])
			}
		}
		delete(want, id)
	}
	var errs []error
	for _, pc := range want {
		if _, err := n.AddPeer(pc); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("node: %d peers refused, first: %w", len(errs), errs[0])
	}
	return nil
}

// sameIdentity reports whether two certificates are for the same keys and
// overlay addresses (the name and tags may differ: a rename or a retag).
func sameIdentity(a, b *identity.Certificate) bool {
	return a.ID() == b.ID() && slices.Equal(a.Addrs, b.Addrs)
}

// RemovePeer forgets a peer and every session with it.
func (n *Node) RemovePeer(id identity.NodeID) {
	n.do(func() {
		if p := n.peers.Load().byID[id]; p != nil {
			n.removePeer(p)
		}
	})
}

func (n *Node) removePeer(p *Peer) {
	n.peersMu.Lock()
	old := n.peers.Load()
	t := &peerTable{byID: make(map[identity.NodeID]*Peer, len(old.byID)), byAddr: make(map[netip.Addr]*Peer, len(old.byAddr))}
	for k, v := range old.byID {
		if v != p {
			t.byID[k] = v
		}
	}
	for k, v := range old.byAddr {
		if v != p {
			t.byAddr[k] = v
		}
	}
	n.peers.Store(t)
	n.peersMu.Unlock()

	if p.pending != nil {
		n.dropPending(p)
	}
	p.mu.Lock()
	kps := p.recv
	p.recv, p.staged = nil, nil
	p.current.Store(nil)
	p.next.Store(nil)
	p.mu.Unlock()
	n.forget(kps)
	n.log.Info("peer removed", "peer", p.Name(), "id", p.id.Short())
}

// Revoke refuses the nodes from now on: their certificates no longer verify
// here, and any session with them is dropped.
func (n *Node) Revoke(ids ...identity.NodeID) {
	n.do(func() {
		for _, id := range ids {
			if id == n.ID() {
				continue
			}
			n.cfg.Trust.Revoke(id)
			if p := n.peers.Load().byID[id]; p != nil {
				n.removePeer(p)
			}
		}
	})
}

// SetRules installs the access rules the node enforces on packets it receives;
// nil removes the policy (everything from mesh members is accepted, as in a
// static mesh without a control plane).
func (n *Node) SetRules(r *policy.Rules) error {
	if r == nil {
		n.fw.filter.Store(nil)
		return nil
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("node: rules: %w", err)
	}
	n.fw.filter.Store(r.Compile())
	return nil
}

// SetCert installs a renewed certificate for this node (same keys and
// addresses; the caller restarts the node for anything else).
func (n *Node) SetCert(c *identity.Certificate) error {
	if err := n.cfg.Trust.Verify(c, n.now()); err != nil {
		return fmt.Errorf("node: renewed certificate: %w", err)
	}
	if !sameIdentity(n.cfg.Cert, c) {
		return fmt.Errorf("node: renewed certificate changes the keys or addresses")
	}
	return n.hs.SetCert(c)
}
