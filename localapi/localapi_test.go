package localapi_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/lab"
	"github.com/x0tta6bl4/x0t/localapi"
	"github.com/x0tta6bl4/x0t/node"
)

// line starts a - b - c (a reaches c only through b) and serves a's local API.
func line(t *testing.T) (*localapi.Client, string, []*lab.Node) {
	t.Helper()
	m, err := lab.New("localapi", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	var nodes []*lab.Node
	for i, name := range []string{"a", "b", "c"} {
		n, err := m.Add(name, byte(i+1))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	for _, err := range []error{a.StartLinks([]*lab.Node{b}, []*lab.Node{c}), b.StartLinks([]*lab.Node{a, c}, nil),
		c.StartLinks([]*lab.Node{b}, []*lab.Node{a})} {
		if err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "x0t.sock")
	srv, err := localapi.Listen(sock, "", a.Node, func() localapi.Status {
		return localapi.Status{Name: "a", ID: a.Node.ID().String(), Mesh: "localapi"}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return localapi.NewClient(sock), sock, nodes
}

func TestLocalAPI(t *testing.T) {
	client, sock, nodes := line(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o660 {
		t.Fatalf("socket mode %o, want 660: only root and the configured group may ask", perm)
	}
	if _, err := localapi.Listen(sock, "", nodes[0].Node, nil, nil); err == nil {
		t.Fatal("a second server took a live socket")
	}

	// Routes: c is reached through b.
	var toC *node.RouteInfo
	for toC == nil {
		routes, err := client.Routes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes.Routes {
			if r.Dest == "c" {
				toC = &r
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no route to c: %+v", routes)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if toC.Next != "b" || toC.Hops != 2 || toC.Direct {
		t.Fatalf("route to c: %+v", toC)
	}

	// Ping c through b: the relay is named.
	var res *node.PingResult
	for seq := range uint16(20) {
		if res, err = client.Ping(ctx, "c", node.PathRoute, seq, time.Second); err != nil {
			t.Fatal(err)
		}
		if res.Err == "" {
			break
		}
	}
	if res.Err != "" || res.RTT <= 0 || len(res.Relays) != 1 || res.Relays[0] != "b" || res.Hops != 2 {
		t.Fatalf("ping c: %+v", res)
	}

	// Status: both peers, with traffic and a handshake.
	st, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "a" || len(st.Peers) != 2 || st.Counters["HandshakesCompleted"] == 0 {
		t.Fatalf("status: %+v", st)
	}
	for _, p := range st.Peers {
		// Byte counts are end to end: the echo to c counts on c, not on b.
		if p.LastHandshake.IsZero() || (p.Name == "c" && (p.TxBytes == 0 || p.RxBytes == 0)) {
			t.Fatalf("peer %s: no handshake or traffic: %+v", p.Name, p)
		}
	}
	if _, err := client.Health(ctx, 5); err != nil {
		t.Fatal(err)
	}

	// Refusals.
	if _, err := client.Ping(ctx, "c", node.PathAlternate, 1, time.Second); !errors.Is(err, node.ErrNoAlternate) {
		t.Fatalf("alternate on a line: %v", err)
	}
	if _, err := client.Ping(ctx, "zed", node.PathRoute, 1, time.Second); !errors.Is(err, node.ErrNoSuchPeer) {
		t.Fatalf("unknown peer: %v", err)
	}
	for _, q := range []string{"peer=c&path=sideways", "peer=c&seq=70000", "peer=c&timeout=1h", "peer=c&timeout=-1s"} {
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
		resp, err := hc.Get("http://x0t" + localapi.PathPing + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %s, want 400", q, resp.Status)
		}
	}
}

func TestNoNodeRunning(t *testing.T) {
	client := localapi.NewClient(filepath.Join(t.TempDir(), "none.sock"))
	_, err := client.Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no node answers") {
		t.Fatalf("%v", err)
	}
}
