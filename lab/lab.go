// Package lab builds meshes of real nodes inside one process: each node has a
// gVisor netstack as its overlay device and a real UDP socket on loopback as its
// underlay, so everything between the application and the socket is the
// production code path. It backs `x0t demo` and the tests that need no root.
package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/x0tta6bl4/x0t/agent"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/node"
	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/transport"
)

// Mesh is a CA and the nodes it certified.
type Mesh struct {
	CA     *identity.Certificate
	caKey  *identity.SigningKey
	Logger *slog.Logger
	// Now is the nodes' clock (nil: time.Now); tests move it to reach rekey and
	// keepalive deadlines without waiting.
	Now func() time.Time
	// Keepalive is the nodes' persistent keepalive interval (0: none).
	Keepalive time.Duration

	mu    sync.Mutex
	nodes []*Node
	cuts  *cutSet // set by EnableCuts
}

// Node is one member of a lab mesh.
type Node struct {
	Name  string
	Key   *identity.NodeKey
	Cert  *identity.Certificate
	Stack *overlay.Netstack
	Conn  *transport.UDPConn
	Node  *node.Node
	Agent *agent.Agent // for nodes enrolled with a control plane (ControlPlane.Join)

	mesh   *Mesh
	cancel context.CancelFunc
	done   chan error
}

// New makes a mesh with a fresh CA.
func New(name string, logger *slog.Logger) (*Mesh, error) {
	ca, caKey, err := identity.NewCA(name, "", 24*time.Hour, time.Now())
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Mesh{CA: ca, caKey: caKey, Logger: logger}, nil
}

// Issue makes a node key and a certificate for 100.64.0.<host>/10 valid from
// notBefore for validity.
func (m *Mesh) Issue(name string, host byte, notBefore time.Time, validity time.Duration) (*identity.NodeKey, *identity.Certificate, error) {
	key, err := identity.GenerateNodeKey()
	if err != nil {
		return nil, nil, err
	}
	cert, err := identity.IssueNode(m.CA, m.caKey, identity.NodeTemplate{
		Name:     name,
		Addrs:    []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, host}), 10)},
		Validity: validity,
		Keys:     key.PublicKeys(),
	}, notBefore)
	if err != nil {
		return nil, nil, err
	}
	return key, cert, nil
}

// Add certifies a node with overlay address 100.64.0.<host>/10 (and the derived
// IPv6 address) and opens its UDP socket on 127.0.0.1. It does not start it.
func (m *Mesh) Add(name string, host byte) (*Node, error) {
	key, cert, err := m.Issue(name, host, time.Now(), 12*time.Hour)
	if err != nil {
		return nil, err
	}
	conn, err := transport.ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		return nil, err
	}
	n := &Node{Name: name, Key: key, Cert: cert, Conn: conn, mesh: m}
	m.mu.Lock()
	m.nodes = append(m.nodes, n)
	m.mu.Unlock()
	return n, nil
}

// Nodes returns the nodes in the order they were added.
func (m *Mesh) Nodes() []*Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Node(nil), m.nodes...)
}

// Addr returns the node's overlay address of one family.
func (n *Node) Addr(v6 bool) netip.Addr {
	p, _ := n.Cert.Addr(v6)
	return p.Addr()
}

// Start runs the node with the given peers (all other nodes when none are
// given), each reachable at its loopback socket.
func (n *Node) Start(peers ...*Node) error {
	if len(peers) == 0 {
		for _, o := range n.mesh.Nodes() {
			if o != n {
				peers = append(peers, o)
			}
		}
	}
	return n.StartLinks(peers, nil)
}

// StartLinks runs the node with direct links to the neighbours (their
// loopback sockets as endpoints) and knowledge of the other members, reached
// only through the mesh.
func (n *Node) StartLinks(neighbours, others []*Node) error {
	if n.cancel != nil {
		return errors.New("lab: node already running")
	}
	peers := neighbours
	trust, err := identity.NewTrust(n.mesh.CA, time.Now())
	if err != nil {
		return err
	}
	var addrs []netip.Addr
	for _, p := range n.Cert.Addrs {
		addrs = append(addrs, p.Addr())
	}
	if n.Stack, err = overlay.NewNetstack(addrs, overlay.DefaultMTU); err != nil {
		return err
	}
	var pcs []node.PeerConfig
	for _, p := range peers {
		pcs = append(pcs, node.PeerConfig{Cert: p.Cert, Endpoints: []netip.AddrPort{p.Conn.LocalAddr()}})
	}
	for _, p := range others {
		pcs = append(pcs, node.PeerConfig{Cert: p.Cert})
	}
	var conn transport.Conn = n.Conn
	if n.mesh.cuts != nil {
		conn = &cutConn{Conn: n.Conn, self: n.Conn.LocalAddr(), cuts: n.mesh.cuts}
	}
	n.Node, err = node.New(node.Config{
		Key: n.Key, Cert: n.Cert, Trust: trust, Device: n.Stack.Device(), Conn: conn,
		Peers: pcs, Logger: n.mesh.Logger, Now: n.mesh.Now, Keepalive: n.mesh.Keepalive,
	})
	if err != nil {
		n.Stack.Close()
		return err
	}
	if err := n.serveEcho(); err != nil {
		n.Stack.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.done = make(chan error, 1)
	go func() { n.done <- n.Node.Run(ctx) }()
	return nil
}

// Stop stops the node abruptly, as a killed process would, keeping its
// identity. Restart brings it back on the same address.
func (n *Node) Stop() error {
	if n.cancel == nil {
		return nil
	}
	n.cancel()
	err := <-n.done
	n.cancel = nil
	if n.Agent != nil {
		return err // the agent closed its device and socket
	}
	n.Conn.Close()
	n.Stack.Close()
	n.Node.Wait()
	return err
}

// Restart stops the node and starts it again with no session state, listening
// on the same UDP address.
func (n *Node) Restart(peers ...*Node) error {
	addr := n.Conn.LocalAddr()
	if err := n.Stop(); err != nil {
		return err
	}
	conn, err := transport.ListenUDP(addr)
	if err != nil {
		return err
	}
	n.Conn = conn
	return n.Start(peers...)
}

// Close stops every node.
func (m *Mesh) Close() {
	for _, n := range m.Nodes() {
		n.Stop()
		n.Conn.Close()
	}
}

// ServeHTTP serves size random bytes at http://<addr>:80/ on both overlay
// addresses and returns them.
func (n *Node) ServeHTTP(size int) ([]byte, func(), error) {
	blob := make([]byte, size)
	rand.Read(blob)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
		w.Write(blob)
	})}
	for _, v6 := range []bool{false, true} {
		ln, err := n.Stack.Net().ListenTCPAddrPort(netip.AddrPortFrom(n.Addr(v6), 80))
		if err != nil {
			srv.Close()
			return nil, nil, fmt.Errorf("lab: listen: %w", err)
		}
		go srv.Serve(ln)
	}
	return blob, func() { srv.Close() }, nil
}

// Get fetches http://<to>:80/ through the overlay.
func (n *Node) Get(ctx context.Context, to *Node, v6 bool) ([]byte, error) {
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return nil, err
			}
			return n.Stack.Net().DialContextTCPAddrPort(ctx, ap)
		},
	}}
	url := "http://" + netip.AddrPortFrom(to.Addr(v6), 80).String() + "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("lab: GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// EchoPort is where every lab node answers UDP echo (RFC 862).
const EchoPort = 7

// serveEcho answers UDP echo on both overlay addresses until the stack closes.
func (n *Node) serveEcho() error {
	for _, v6 := range []bool{false, true} {
		conn, err := n.Stack.Net().ListenUDPAddrPort(netip.AddrPortFrom(n.Addr(v6), EchoPort))
		if err != nil {
			return fmt.Errorf("lab: echo server: %w", err)
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				k, from, err := conn.ReadFrom(buf)
				if err != nil {
					return
				}
				conn.WriteTo(buf[:k], from)
			}
		}()
	}
	return nil
}

// Ping measures one round trip through the overlay to the node's UDP echo
// service. (ICMP through wireguard-go's netstack PingConn is not used: its Read
// waits for a wake-up without first looking for a reply already queued, so fast
// replies are missed.)
func (n *Node) Ping(ctx context.Context, to *Node, v6 bool, seq int) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	conn, err := n.Stack.Net().DialUDPAddrPort(netip.AddrPortFrom(n.Addr(v6), 0), netip.AddrPortFrom(to.Addr(v6), EchoPort))
	if err != nil {
		return 0, fmt.Errorf("lab: ping socket: %w", err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	conn.SetReadDeadline(deadline)
	msg := fmt.Appendf(nil, "x0tta6bl4 lab ping %d", seq)
	start := time.Now()
	if _, err := conn.Write(msg); err != nil {
		return 0, fmt.Errorf("lab: ping: %w", err)
	}
	buf := make([]byte, 2048)
	for {
		k, err := conn.Read(buf)
		if err != nil {
			return 0, fmt.Errorf("lab: ping %s: %w", to.Addr(v6), err)
		}
		if bytes.Equal(buf[:k], msg) {
			return time.Since(start), nil
		}
	}
}
