package node_test

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/lab"
	"github.com/x0tta6bl4/x0t/node"
)

func newMesh(t *testing.T, names ...string) []*lab.Node {
	t.Helper()
	m := newLab(t, nil)
	nodes := addNodes(t, m, names)
	startAll(t, nodes)
	return nodes
}

// newLab returns an empty lab mesh, closed when the test ends.
func newLab(t *testing.T, logger *slog.Logger) *lab.Mesh {
	t.Helper()
	m, err := lab.New("test", logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// addNodes adds one node per name to m, numbered from 1.
func addNodes(t *testing.T, m *lab.Mesh, names []string) []*lab.Node {
	t.Helper()
	var nodes []*lab.Node
	for i, name := range names {
		n, err := m.Add(name, byte(i+1))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// startAll starts every node, each with every other as a direct peer.
func startAll(t *testing.T, nodes []*lab.Node) {
	t.Helper()
	for _, n := range nodes {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
}

func get(t *testing.T, from, to *lab.Node, v6 bool) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	body, err := from.Get(ctx, to, v6)
	if err != nil {
		t.Fatalf("%s -> %s (v6=%v): %v", from.Name, to.Name, v6, err)
	}
	return body
}

// TestNetstackHTTPThroughTunnel is the no-root end-to-end check: two nodes on
// gVisor netstacks, an HTTP GET over IPv4 and IPv6 through the tunnel.
func TestNetstackHTTPThroughTunnel(t *testing.T) {
	nodes := newMesh(t, "alpha", "beta")
	a, b := nodes[0], nodes[1]
	blob, stop, err := b.ServeHTTP(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for _, v6 := range []bool{false, true} {
		if got := get(t, a, b, v6); sha256.Sum256(got) != sha256.Sum256(blob) {
			t.Fatalf("v6=%v: body differs (%d bytes, want %d)", v6, len(got), len(blob))
		}
	}
	st := a.Node.Stats().Snapshot()
	if st["HandshakesCompleted"] == 0 || st["TxPackets"] == 0 || st["RxPackets"] == 0 {
		t.Fatalf("counters did not move: %v", st)
	}
	for _, k := range []string{"DropAuth", "DropReplay", "HSDecrypt", "HSBadMAC", "DropSpoofedSource"} {
		if st[k] != 0 {
			t.Errorf("%s = %d on a clean run", k, st[k])
		}
	}
}

// TestRestartRecovers drops all of one node's state (as kill -9 would) and
// starts it again: the survivor carries traffic again without being touched.
func TestRestartRecovers(t *testing.T) {
	nodes := newMesh(t, "alpha", "beta")
	a, b := nodes[0], nodes[1]
	_, stop, err := a.ServeHTTP(1024)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	get(t, b, a, false)
	if err := b.Restart(a); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	get(t, b, a, false)
	t.Logf("traffic resumed %v after restart", time.Since(start).Round(time.Millisecond))
	// And in the other direction, on the survivor's initiative.
	if err := a.Restart(b); err != nil {
		t.Fatal(err)
	}
	_, stop2, err := a.ServeHTTP(1024)
	if err != nil {
		t.Fatal(err)
	}
	defer stop2()
	get(t, b, a, false)
}

func TestThreeNodesAllPairs(t *testing.T) {
	nodes := newMesh(t, "n1", "n2", "n3")
	for _, n := range nodes {
		_, stop, err := n.ServeHTTP(64 << 10)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	for _, from := range nodes {
		for _, to := range nodes {
			if from != to {
				if got := get(t, from, to, false); len(got) != 64<<10 {
					t.Fatalf("%s -> %s: %d bytes", from.Name, to.Name, len(got))
				}
			}
		}
	}
}

func nodeConfigs(peers ...*lab.Node) []node.PeerConfig {
	var out []node.PeerConfig
	for _, p := range peers {
		out = append(out, node.PeerConfig{Cert: p.Cert, Endpoints: []netip.AddrPort{p.Conn.LocalAddr()}})
	}
	return out
}
