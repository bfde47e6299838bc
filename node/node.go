// Package node is the x0t agent's data plane: it joins an overlay device and an
// underlay transport with the handshake and sessions.
//
// Four goroutines do the work. The outbound loop reads batches of packets from
// the device, finds each one's peer by destination address, seals it in place
// and sends the batch. The inbound loop reads batches of datagrams, opens data
// packets in place and writes them to the device in a batch; handshake messages
// it hands to the front stage, which reassembles them and applies the DoS
// defences (front.go). The control loop runs every handshake and timer
// (retransmission, rekey, keepalive, expiry), so handshake state has one owner
// and the two packet loops never wait on public-key crypto.
package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/x0tta6bl4/x0t/config"
	"github.com/x0tta6bl4/x0t/handshake"
	"github.com/x0tta6bl4/x0t/heal"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/transport"
	"github.com/x0tta6bl4/x0t/wire"
	"golang.org/x/sys/cpu"
)

// PeerConfig is a peer the node knows in advance.
type PeerConfig struct {
	Cert      *identity.Certificate
	Endpoints []netip.AddrPort // none: the peer contacts us (or is reached through the mesh)
}

// Config builds a node.
type Config struct {
	Key       *identity.NodeKey
	Cert      *identity.Certificate
	Trust     *identity.Trust
	Device    overlay.Device
	Conn      transport.Conn
	Peers     []PeerConfig
	Keepalive time.Duration // persistent keepalive interval; 0 disables
	Suite     uint8         // transport AEAD; 0 picks AES-256-GCM where the CPU has AES, else ChaCha20-Poly1305
	// UnderlayMTU is the largest IP packet the underlay carries whole
	// (DefaultUnderlayMTU if 0); it bounds packets relayed through the mesh.
	UnderlayMTU int
	// BusyPoll, if positive, turns on the low-latency mode: after traffic
	// the data-path loops poll the device and the socket without sleeping
	// for this long before they block (package busypoll), so that a packet
	// arriving within the window needs no thread wakeup. Each loop may take
	// a CPU while it polls. 0 is off; at most config.MaxBusyPoll. Only a
	// kernel TUN and the Linux UDP socket can be polled; a loop on anything
	// else sleeps as usual.
	BusyPoll time.Duration
	Logger   *slog.Logger
	Now      func() time.Time // nil means time.Now
}

// Timing of the control loop.
const (
	tickInterval        = 100 * time.Millisecond
	retransmitBase      = 1 * time.Second // first handshake retry; doubles up to retransmitMax
	retransmitMax       = 8 * time.Second
	passiveKeepalive    = 10 * time.Second // answer received data with a keepalive after this much silence
	newHandshakeAfter   = 15 * time.Second // sent data but heard nothing for this long: re-handshake
	responderRekeyDelay = 10 * time.Second // the responder rekeys only if the initiator did not
	unknownKickInterval = time.Second
)

// Node is a running agent data plane.
type Node struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	hs    *handshake.Handshaker
	suite uint8
	mtu   int

	underlayMTU int

	peersMu sync.Mutex
	peers   atomic.Pointer[peerTable]
	index   *indexTable

	front   chan inboundMsg // handshake datagrams from the inbound loop
	quota   *sourceQuota    // per-source share of front
	work    chan inboundMsg // admitted handshake messages for the control loop
	kicks   chan *Peer
	unknown chan netip.AddrPort

	stats    Stats
	fw       firewall
	ops      chan func() // run by the control loop: changes to peers and policy
	mesh     meshState
	linkMsgs chan linkMsg
	healer   *heal.Loop
	ping     pinger
	names    atomic.Value // map[string]string: peer ID → name, for heal's reasons

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
	started   atomic.Bool
}

// peerTable is an immutable snapshot: the packet loops read it without locks.
type peerTable struct {
	byID   map[identity.NodeID]*Peer
	byAddr map[netip.Addr]*Peer
}

type inboundMsg struct {
	data      []byte
	src       netip.AddrPort  // UDP source, for messages that came straight to us
	from      identity.NodeID // the neighbour that handed us a forwarded message
	forwarded bool            // came through the mesh: src means nothing
}

// linkMsg is a link message (routing, link monitoring) from a neighbour.
type linkMsg struct {
	from *Peer
	data []byte
}

// New builds a node. It does not start any goroutine; call Run.
func New(cfg Config) (*Node, error) {
	if cfg.Key == nil || cfg.Cert == nil || cfg.Trust == nil || cfg.Device == nil || cfg.Conn == nil {
		return nil, errors.New("node: config needs key, certificate, trust, device and conn")
	}
	if cfg.BusyPoll < 0 || cfg.BusyPoll > config.MaxBusyPoll {
		return nil, fmt.Errorf("node: busy-poll window %v outside 0..%v", cfg.BusyPoll, config.MaxBusyPoll)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Trust.Verify(cfg.Cert, cfg.Now()); err != nil {
		return nil, fmt.Errorf("node: own certificate: %w", err)
	}
	hs, err := handshake.New(handshake.Config{Key: cfg.Key, Cert: cfg.Cert, Trust: cfg.Trust, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	mtu, err := cfg.Device.MTU()
	if err != nil {
		return nil, fmt.Errorf("node: device MTU: %w", err)
	}
	n := &Node{
		cfg:         cfg,
		log:         cfg.Logger.With("node", cfg.Cert.Name),
		now:         cfg.Now,
		hs:          hs,
		suite:       cfg.Suite,
		mtu:         mtu,
		underlayMTU: cmp.Or(cfg.UnderlayMTU, DefaultUnderlayMTU),
		index:       newIndexTable(),
		front:       make(chan inboundMsg, frontQueueLen),
		quota:       newSourceQuota(),
		work:        make(chan inboundMsg, workQueueLen),
		kicks:       make(chan *Peer, 256),
		unknown:     make(chan netip.AddrPort, 64),
		closed:      make(chan struct{}),
		ops:         make(chan func()),
		linkMsgs:    make(chan linkMsg, 1024),
	}
	n.fw.flows = newConntrack()
	n.initMesh()
	n.initHeal()
	if n.suite == 0 {
		n.suite = defaultSuite()
	}
	n.peers.Store(&peerTable{byID: map[identity.NodeID]*Peer{}, byAddr: map[netip.Addr]*Peer{}})
	for _, pc := range cfg.Peers {
		if _, err := n.AddPeer(pc); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// defaultSuite prefers AES-256-GCM where the CPU accelerates it (several times
// faster than ChaCha20-Poly1305 there) and ChaCha20-Poly1305 elsewhere.
func defaultSuite() uint8 {
	switch runtime.GOARCH {
	case "amd64":
		if cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ {
			return wire.SuiteAES256GCM
		}
	case "arm64":
		if cpu.ARM64.HasAES && cpu.ARM64.HasPMULL {
			return wire.SuiteAES256GCM
		}
	case "s390x":
		return wire.SuiteAES256GCM
	}
	return wire.SuiteChaCha20Poly1305
}

// SuiteName names a transport suite.
func SuiteName(s uint8) string {
	switch s {
	case wire.SuiteAES256GCM:
		return "AES-256-GCM"
	case wire.SuiteChaCha20Poly1305:
		return "ChaCha20-Poly1305"
	}
	return fmt.Sprintf("suite-%d", s)
}

// Suite returns the transport AEAD this node proposes.
func (n *Node) Suite() uint8 { return n.suite }

// Stats returns the node's counters.
func (n *Node) Stats() *Stats { return &n.stats }

// ID returns this node's ID.
func (n *Node) ID() identity.NodeID { return n.cfg.Cert.ID() }

// AddPeer verifies a peer certificate and adds (or updates) the peer.
func (n *Node) AddPeer(pc PeerConfig) (*Peer, error) {
	if err := n.cfg.Trust.Verify(pc.Cert, n.now()); err != nil {
		return nil, fmt.Errorf("node: peer %q: %w", pc.Cert.Name, err)
	}
	if pc.Cert.ID() == n.ID() {
		return nil, fmt.Errorf("node: peer %q is this node", pc.Cert.Name)
	}
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	old := n.peers.Load()
	if p, ok := old.byID[pc.Cert.ID()]; ok {
		return p, nil
	}
	p := newPeer(n, pc.Cert, pc.Endpoints)
	t := &peerTable{byID: make(map[identity.NodeID]*Peer, len(old.byID)+1), byAddr: make(map[netip.Addr]*Peer, len(old.byAddr)+2)}
	for k, v := range old.byID {
		t.byID[k] = v
	}
	for k, v := range old.byAddr {
		t.byAddr[k] = v
	}
	t.byID[p.id] = p
	for _, a := range p.addrs {
		if other, taken := t.byAddr[a]; taken {
			return nil, fmt.Errorf("node: peer %q claims %s, already held by %q", p.Name(), a, other.Name())
		}
		t.byAddr[a] = p
	}
	n.peers.Store(t)
	if n.started.Load() && len(pc.Endpoints) > 0 {
		n.kick(p)
	}
	return p, nil
}

// Peers returns the status of every peer.
func (n *Node) Peers() []PeerStatus {
	t := n.peers.Load()
	out := make([]PeerStatus, 0, len(t.byID))
	for _, p := range t.byID {
		out = append(out, p.status())
	}
	return out
}

// Peer returns a peer by name.
func (n *Node) Peer(name string) *Peer {
	for _, p := range n.peers.Load().byID {
		if p.Name() == name {
			return p
		}
	}
	return nil
}

// Run starts the node and blocks until ctx is done or a loop fails. It closes
// neither the device nor the conn: their owner does, after Run returns.
func (n *Node) Run(ctx context.Context) error {
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("node: already running")
	}
	loops := []func() error{n.outboundLoop, n.inboundLoop, n.frontLoop, n.controlLoop}
	errc := make(chan error, len(loops))
	for _, loop := range loops {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := loop(); err != nil {
				errc <- err
			}
		}()
	}
	n.log.Info("node up", "id", n.ID().Short(), "listen", n.cfg.Conn.LocalAddr(), "suite", SuiteName(n.suite),
		"peers", len(n.peers.Load().byID))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	n.Close()
	return err
}

// Close stops the loops. The device and conn must be closed by their owner to
// unblock the packet loops; Close waits for nothing.
func (n *Node) Close() {
	n.closeOnce.Do(func() { close(n.closed) })
}

// Wait blocks until every loop has returned (after Close and after the device
// and conn are closed).
func (n *Node) Wait() { n.wg.Wait() }

func (n *Node) isClosed() bool {
	select {
	case <-n.closed:
		return true
	default:
		return false
	}
}

// kick asks the control loop to start a handshake with p.
func (n *Node) kick(p *Peer) {
	if !p.kicked.CompareAndSwap(false, true) {
		return // one is queued already
	}
	select {
	case n.kicks <- p:
	default:
		p.kicked.Store(false)
	}
}
