package node_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/lab"
	"github.com/x0tta6bl4/x0t/policy"
)

func hostPrefixes(n *lab.Node) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range n.Cert.Addrs {
		out = append(out, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
	}
	return out
}

func pingOK(from, to *lab.Node, v6 bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := from.Ping(ctx, to, v6, 1)
	return err
}

// TestPolicyEnforcedByReceiver: the receiver applies its rules to every packet,
// and replies to flows a node opened itself are let back in.
func TestPolicyEnforcedByReceiver(t *testing.T) {
	nodes := newMesh(t, "alpha", "beta")
	a, b := nodes[0], nodes[1]
	_, stop, err := b.ServeHTTP(64 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := pingOK(a, b, false); err != nil {
		t.Fatal(err)
	}

	// beta accepts TCP port 80 from alpha, nothing else.
	if err := b.Node.SetRules(&policy.Rules{Allow: []policy.Rule{{Srcs: hostPrefixes(a), Proto: policy.ProtoTCP,
		Ports: []policy.PortRange{{First: 80, Last: 80}}}}}); err != nil {
		t.Fatal(err)
	}
	get(t, a, b, false)
	get(t, a, b, true)
	denied := counter(b, "DropPolicy")
	if err := pingOK(a, b, false); err == nil {
		t.Fatal("UDP echo passed a TCP-80-only policy")
	}
	if counter(b, "DropPolicy") == denied {
		t.Fatal("denied packet not counted")
	}

	// alpha accepts nothing at all, yet its own connections work: the replies
	// belong to flows it opened.
	if err := a.Node.SetRules(&policy.Rules{}); err != nil {
		t.Fatal(err)
	}
	get(t, a, b, false)
	if err := b.Node.SetRules(nil); err != nil { // beta open again
		t.Fatal(err)
	}
	if err := pingOK(b, a, false); err == nil {
		t.Fatal("alpha accepted a new flow under an empty policy")
	}
	if err := pingOK(a, b, false); err != nil {
		t.Fatalf("alpha's own echo to beta: %v", err)
	}
	// Removing the policy restores everything.
	a.Node.SetRules(nil)
	if err := pingOK(b, a, false); err != nil {
		t.Fatal(err)
	}
}

// TestRevokeCutsOffAPeer: after Revoke, a node drops every session with the
// revoked node and refuses its handshakes; others are unaffected.
func TestRevokeCutsOffAPeer(t *testing.T) {
	nodes := newMesh(t, "alpha", "beta", "gamma")
	a, b, c := nodes[0], nodes[1], nodes[2]
	for _, pair := range [][2]*lab.Node{{a, c}, {b, c}, {a, b}} {
		if err := pingOK(pair[0], pair[1], false); err != nil {
			t.Fatal(err)
		}
	}
	a.Node.Revoke(c.Node.ID())
	b.Node.Revoke(c.Node.ID())
	if err := pingOK(c, a, false); err == nil {
		t.Fatal("revoked node still reaches alpha")
	}
	// gamma forgets its sessions (a restart) and tries to handshake again.
	if err := c.Restart(a, b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for counter(a, "HSCertRevoked") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("revoked node's handshake not refused: %v", a.Node.Stats().Snapshot())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := pingOK(c, b, false); err == nil {
		t.Fatal("revoked node reaches beta after a restart")
	}
	if err := pingOK(a, b, false); err != nil {
		t.Fatalf("alpha-beta affected by gamma's revocation: %v", err)
	}
	for _, p := range a.Node.Peers() {
		if p.Name == "gamma" {
			t.Fatal("revoked peer still listed")
		}
	}
}

// TestSetPeersReconciles adds and removes peers live.
func TestSetPeersReconciles(t *testing.T) {
	nodes := newMesh(t, "alpha", "beta", "gamma")
	a, b, c := nodes[0], nodes[1], nodes[2]
	if err := pingOK(a, c, false); err != nil {
		t.Fatal(err)
	}
	if err := a.Node.SetPeers(nodeConfigs(b)); err != nil { // gamma dropped
		t.Fatal(err)
	}
	if err := pingOK(a, c, false); err == nil {
		t.Fatal("removed peer still reachable")
	}
	if err := pingOK(a, b, false); err != nil {
		t.Fatal(err)
	}
	if err := a.Node.SetPeers(nodeConfigs(b, c)); err != nil { // and back
		t.Fatal(err)
	}
	if err := pingOK(a, c, false); err != nil {
		// The first echo may wait for the handshake: try once more.
		if err := pingOK(a, c, false); err != nil {
			t.Fatalf("re-added peer: %v", err)
		}
	}
}
