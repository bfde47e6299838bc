package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/node"
)

// TestMeshPing: `x0t ping` answers from the peer's own stack, directly, through
// a relay, and on the alternate path of a diamond; the replies never reach
// the sender's device; a path that does not exist is an error, not a hang.
func TestMeshPing(t *testing.T) {
	// a - b - c - d - a: two ways from a to c, through b or through d.
	_, nodes := topology(t, false, []string{"a", "b", "c", "d"}, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 0}})
	a := nodes[0]
	waitRoute(t, a, nodes[2], 15*time.Second)
	ping := func(target, path string) (node.PingResult, error) {
		p, err := a.Node.FindPeer(target)
		if err != nil {
			return node.PingResult{}, err
		}
		var res node.PingResult
		for seq := range uint16(20) { // the first echo may wait on an end-to-end handshake
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			res, err = a.Node.Ping(ctx, p, path, seq)
			cancel()
			if err == nil || errors.Is(err, node.ErrNoAlternate) {
				break
			}
		}
		return res, err
	}

	res, err := ping("b", node.PathRoute)
	if err != nil || res.Path != "direct" || res.Hops != 1 || res.RTT <= 0 || res.Addr != nodes[1].Addr(false) {
		t.Fatalf("direct: %+v, %v", res, err)
	}
	res, err = ping(nodes[2].Addr(false).String(), node.PathRoute)
	if err != nil || len(res.Relays) != 1 || res.Hops != 2 || res.RTT <= 0 {
		t.Fatalf("through a relay: %+v, %v", res, err)
	}
	first := res.Relays[0]
	if first != "b" && first != "d" {
		t.Fatalf("relayed by %q", first)
	}
	// The alternate goes round the other side: through the table's alternate
	// next hop (the route itself may flip between b and d as RTTs move, so
	// the table is read before and after). The other side is loop-free only
	// once the link RTTs are alike; on a loaded machine the first samples of
	// one link can be ten times the others', so wait for that to pass.
	before := waitRoute(t, a, nodes[2], time.Second)
	for deadline := time.Now().Add(15 * time.Second); before.Alt == "" && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		before = waitRoute(t, a, nodes[2], time.Second)
	}
	res, err = ping("c", node.PathAlternate)
	after := waitRoute(t, a, nodes[2], time.Second)
	if err != nil || len(res.Relays) != 1 || res.RTT <= 0 ||
		(res.Relays[0] != before.Alt && res.Relays[0] != after.Alt) {
		t.Fatalf("alternate: %+v, %v (route before %+v, after %+v)", res, err, before, after)
	}
	// An unknown node is refused at once.
	if _, err := a.Node.FindPeer("nobody"); !errors.Is(err, node.ErrNoSuchPeer) {
		t.Fatalf("unknown peer: %v", err)
	}
	if _, err := a.Node.FindPeer("100.64.9.9"); !errors.Is(err, node.ErrNoSuchPeer) {
		t.Fatalf("unknown address: %v", err)
	}
}

// TestMeshPingNoAlternate: on a line there is no second way.
func TestMeshPingNoAlternate(t *testing.T) {
	_, nodes := topology(t, false, []string{"a", "b", "c"}, [][2]int{{0, 1}, {1, 2}})
	waitRoute(t, nodes[0], nodes[2], 15*time.Second)
	p, err := nodes[0].Node.FindPeer("c")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := nodes[0].Node.Ping(ctx, p, node.PathAlternate, 1); !errors.Is(err, node.ErrNoAlternate) {
		t.Fatalf("alternate on a line: %v", err)
	}
	if _, err := nodes[0].Node.Ping(ctx, p, "sideways", 1); err == nil {
		t.Fatal("an unknown path was accepted")
	}
}
