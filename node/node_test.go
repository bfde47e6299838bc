package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/transport"
)

// testMesh is a CA and nodes on netstack devices over real UDP on loopback.
type testMesh struct {
	t     *testing.T
	ca    *identity.Certificate
	caKey *identity.SigningKey
	nodes []*testNode
}

type testNode struct {
	name   string
	key    *identity.NodeKey
	cert   *identity.Certificate
	stack  *overlay.Netstack
	conn   *transport.UDPConn
	node   *Node
	cancel context.CancelFunc
	done   chan error
}

func newTestMesh(t *testing.T) *testMesh {
	ca, caKey, err := identity.NewCA("test", "", 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &testMesh{t: t, ca: ca, caKey: caKey}
}

func (m *testMesh) trust() *identity.Trust {
	tr, err := identity.NewTrust(m.ca, time.Now())
	if err != nil {
		m.t.Fatal(err)
	}
	return tr
}

// addNode issues a certificate for 100.64.0.<i>.
func (m *testMesh) addNode(name string, i int) *testNode {
	t := m.t
	key, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.IssueNode(m.ca, m.caKey, identity.NodeTemplate{
		Name:     name,
		Addrs:    []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, byte(i)}), 10)},
		Validity: time.Hour,
		Keys:     key.PublicKeys(),
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := transport.ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{name: name, key: key, cert: cert, conn: conn}
	m.nodes = append(m.nodes, tn)
	return tn
}

func (tn *testNode) addrs() []netip.Addr {
	var out []netip.Addr
	for _, p := range tn.cert.Addrs {
		out = append(out, p.Addr())
	}
	return out
}

// start runs the node with every other node as a peer.
func (m *testMesh) start(tn *testNode) {
	t := m.t
	var err error
	if tn.stack, err = overlay.NewNetstack(tn.addrs(), 1420); err != nil {
		t.Fatal(err)
	}
	var peers []PeerConfig
	for _, o := range m.nodes {
		if o != tn {
			peers = append(peers, PeerConfig{Cert: o.cert, Endpoints: []netip.AddrPort{o.conn.LocalAddr()}})
		}
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tn.node, err = New(Config{Key: tn.key, Cert: tn.cert, Trust: m.trust(), Device: tn.stack.Device(),
		Conn: tn.conn, Peers: peers, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn.cancel = cancel
	tn.done = make(chan error, 1)
	go func() { tn.done <- tn.node.Run(ctx) }()
	t.Cleanup(func() { m.stop(tn) })
}

func (m *testMesh) stop(tn *testNode) {
	if tn.cancel == nil {
		return
	}
	tn.cancel()
	<-tn.done
	tn.conn.Close()
	tn.stack.Close()
	tn.node.Wait()
	tn.cancel = nil
}

// httpServe serves size random bytes at /blob on the node's overlay address.
func httpServe(t *testing.T, tn *testNode, v6 bool, size int) []byte {
	blob := make([]byte, size)
	rand.Read(blob)
	p, _ := tn.cert.Addr(v6)
	ln, err := tn.stack.Net().ListenTCPAddrPort(netip.AddrPortFrom(p.Addr(), 80))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(blob)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return blob
}

func httpGet(ctx context.Context, from, to *testNode, v6 bool) ([]byte, error) {
	p, _ := to.cert.Addr(v6)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return nil, err
			}
			return from.stack.Net().DialContextTCPAddrPort(ctx, ap)
		},
	}}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+netip.AddrPortFrom(p.Addr(), 80).String()+"/blob", nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func TestNetstackHTTPThroughTunnel(t *testing.T) {
	m := newTestMesh(t)
	a := m.addNode("alpha", 1)
	b := m.addNode("beta", 2)
	m.start(a)
	m.start(b)
	for _, v6 := range []bool{false, true} {
		blob := httpServe(t, b, v6, 4<<20)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		got, err := httpGet(ctx, a, b, v6)
		cancel()
		if err != nil {
			t.Fatalf("v6=%v: GET through the tunnel: %v", v6, err)
		}
		if sha256.Sum256(got) != sha256.Sum256(blob) {
			t.Fatalf("v6=%v: body differs (%d bytes, want %d)", v6, len(got), len(blob))
		}
	}
	st := a.node.Stats().Snapshot()
	if st["HandshakesCompleted"] == 0 || st["TxPackets"] == 0 || st["RxPackets"] == 0 {
		t.Fatalf("counters did not move: %v", st)
	}
	for _, k := range []string{"DropAuth", "DropReplay", "HSDecrypt", "HSBadMAC"} {
		if st[k] != 0 {
			t.Errorf("%s = %d on a clean run", k, st[k])
		}
	}
}

// TestRestartRecovers kills one node (no goodbye) and starts a fresh process
// state for it: the survivor must carry traffic again without being touched.
func TestRestartRecovers(t *testing.T) {
	m := newTestMesh(t)
	a := m.addNode("alpha", 1)
	b := m.addNode("beta", 2)
	m.start(a)
	m.start(b)
	httpServe(t, a, false, 1024)
	get := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := httpGet(ctx, b, a, false)
		return err
	}
	if err := get(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	// "Restart" b: same keys and address, all session state lost.
	addr := b.conn.LocalAddr()
	m.stop(b)
	conn, err := transport.ListenUDP(addr)
	if err != nil {
		t.Fatal(err)
	}
	b.conn = conn
	m.start(b)
	start := time.Now()
	if err := get(10 * time.Second); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	t.Logf("traffic resumed %v after restart", time.Since(start).Round(time.Millisecond))
}

func TestThreeNodesAllPairs(t *testing.T) {
	m := newTestMesh(t)
	nodes := []*testNode{m.addNode("n1", 1), m.addNode("n2", 2), m.addNode("n3", 3)}
	for _, n := range nodes {
		m.start(n)
		httpServe(t, n, false, 64<<10)
	}
	for _, from := range nodes {
		for _, to := range nodes {
			if from == to {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			got, err := httpGet(ctx, from, to, false)
			cancel()
			if err != nil || len(got) != 64<<10 {
				t.Fatalf("%s -> %s: %v (%d bytes)", from.name, to.name, err, len(got))
			}
		}
	}
}
