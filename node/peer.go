package node

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/x0tta6bl4/x0t/handshake"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/session"
)

// maxStaged bounds the packets held for a peer while its session comes up.
const maxStaged = 128

// Peer is another node we hold sessions with.
//
// current is the keypair we send on. next is a keypair we made as responder: it
// becomes current once the initiator proves it holds the keys by sending on it.
// Every keypair stays receivable (in recv and the index table) until it expires
// or maxKeypairs newer ones exist, because during a rekey, and above all when
// both sides rekey at once, the peer may still be sending on any of them.
type Peer struct {
	node    *Node
	id      identity.NodeID
	cert    atomic.Pointer[identity.Certificate] // replaced on renewal or rename (same keys and addresses)
	addrs   []netip.Addr                         // overlay host addresses, from the certificate
	cookies *handshake.CookieGenerator

	configured []netip.AddrPort // endpoints from the config or netmap; control loop only
	endpoint   atomic.Pointer[netip.AddrPort]

	current atomic.Pointer[session.Keypair]
	next    atomic.Pointer[session.Keypair] // written under mu; read lock-free by the inbound loop
	kicked  atomic.Bool                     // a kick is queued for the control loop

	// linkDown is set while link monitoring finds the direct path to the peer
	// dead: traffic for it then goes through the mesh. Cleared when the link
	// answers probes again.
	linkDown atomic.Bool
	// vk is the peer's hybrid verifying key, parsed once, for routing adverts.
	vk atomic.Pointer[identity.VerifyingKey]

	mu     sync.Mutex
	recv   []*session.Keypair // every live keypair, oldest first
	staged [][]byte

	// Handshake state, touched only by the handshake goroutine.
	pending       *handshake.Initiator
	pendingSentAt time.Time
	attempts      int
	nextEndpoint  int
	lastHandshake atomic.Int64 // unix nanoseconds of the last completed handshake

	lastSent atomic.Int64 // unix nanoseconds
	lastRecv atomic.Int64

	rxBytes, txBytes     atomic.Uint64
	rxPackets, txPackets atomic.Uint64
	faults               peerFaults // for the MAPE-K loop
}

func newPeer(n *Node, cert *identity.Certificate, endpoints []netip.AddrPort) *Peer {
	p := &Peer{
		node:       n,
		id:         cert.ID(),
		cookies:    handshake.NewCookieGenerator(cert.Keys.DH),
		configured: endpoints,
	}
	p.cert.Store(cert)
	for _, a := range cert.Addrs {
		p.addrs = append(p.addrs, a.Addr())
	}
	if len(endpoints) > 0 {
		ep := endpoints[0]
		p.endpoint.Store(&ep)
	}
	return p
}

// verifyingKey returns the peer's parsed signing key.
func (p *Peer) verifyingKey() (*identity.VerifyingKey, error) {
	if vk := p.vk.Load(); vk != nil {
		return vk, nil
	}
	vk, err := p.cert.Load().VerifyingKey()
	if err != nil {
		return nil, err
	}
	p.vk.Store(vk)
	return vk, nil
}

// direct reports whether traffic for the peer can go straight to it: a
// session, an endpoint, and no verdict that the direct path is dead.
func (p *Peer) direct() bool {
	return !p.linkDown.Load() && p.endpoint.Load() != nil
}

// Name returns the peer's certificate name.
func (p *Peer) Name() string { return p.cert.Load().Name }

// ID returns the peer's node ID.
func (p *Peer) ID() identity.NodeID { return p.id }

// Endpoint returns where we currently send to the peer, if anywhere.
func (p *Peer) Endpoint() (netip.AddrPort, bool) {
	ep := p.endpoint.Load()
	if ep == nil {
		return netip.AddrPort{}, false
	}
	return *ep, true
}

// setEndpoint roams to the address an authenticated packet came from.
func (p *Peer) setEndpoint(ap netip.AddrPort) {
	if cur := p.endpoint.Load(); cur != nil && *cur == ap {
		return
	}
	ep := ap // a copy declared here: taking &ap would move ap to the heap on every call
	p.endpoint.Store(&ep)
}

// owns reports whether addr is one of the peer's overlay addresses: a peer may
// only send packets from its own addresses (cryptokey routing).
func (p *Peer) owns(addr netip.Addr) bool {
	for _, a := range p.addrs {
		if a == addr {
			return true
		}
	}
	return false
}

// stage holds a copy of an outbound packet until the session is up.
func (p *Peer) stage(pkt []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.staged) >= maxStaged {
		return false
	}
	p.staged = append(p.staged, append([]byte(nil), pkt...))
	p.node.stats.Staged.Add(1)
	return true
}

func (p *Peer) takeStaged() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.staged
	p.staged = nil
	return s
}

// maxKeypairs bounds the keypairs held per peer. A simultaneous rekey by both
// sides needs four: each side's old and new initiator keypair.
const maxKeypairs = 5

// add records kp as receivable and returns keypairs pushed out by the bound.
func (p *Peer) add(kp *session.Keypair) (dropped []*session.Keypair) {
	p.recv = append(p.recv, kp)
	for len(p.recv) > maxKeypairs {
		old := p.recv[0]
		p.recv = p.recv[1:]
		if old == p.current.Load() || old == p.next.Load() {
			p.recv = append(p.recv, old) // never drop the send key or the pending one
			continue
		}
		dropped = append(dropped, old)
	}
	return dropped
}

// installInitiator makes a keypair from our own completed initiation current:
// the responder already holds the keys.
func (p *Peer) installInitiator(kp *session.Keypair) (dropped []*session.Keypair) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current.Store(kp)
	p.next.Store(nil) // an unconfirmed responder keypair stays receivable in recv
	return p.add(kp)
}

// installResponder holds a keypair we made as responder until it is confirmed.
func (p *Peer) installResponder(kp *session.Keypair) (dropped []*session.Keypair) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next.Store(kp)
	return p.add(kp)
}

// confirm promotes next to current when the first packet arrives on it. It
// reports whether kp was next (then staged packets can go out).
func (p *Peer) confirm(kp *session.Keypair) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next.Load() != kp {
		return false
	}
	p.current.Store(kp)
	p.next.Store(nil)
	return true
}

// expire removes keypairs past their lifetime and returns them.
func (p *Peer) expire(now time.Time) (dropped []*session.Keypair) {
	p.mu.Lock()
	defer p.mu.Unlock()
	live := p.recv[:0]
	for _, kp := range p.recv {
		if kp.Expired(now) {
			dropped = append(dropped, kp)
		} else {
			live = append(live, kp)
		}
	}
	clear(p.recv[len(live):])
	p.recv = live
	if next := p.next.Load(); next != nil && next.Expired(now) {
		p.next.Store(nil)
	}
	if cur := p.current.Load(); cur != nil && cur.Expired(now) {
		p.current.Store(nil)
	}
	return dropped
}

// freshNext reports whether the peer started a session with us recently that
// has not been confirmed yet: then we need not start one of our own.
func (p *Peer) freshNext(now time.Time) bool {
	next := p.next.Load()
	return next != nil && now.Sub(next.Created) < retransmitMax
}

// PeerStatus is a snapshot of one peer for status output.
type PeerStatus struct {
	Name          string
	ID            string
	Addrs         []netip.Addr
	Endpoint      string
	Transport     string // the underlay to the endpoint: "udp" (the only one built so far); empty when there is none
	Up            bool   // a current keypair exists
	Direct        bool   // traffic goes straight to the peer (else through the mesh)
	LastHandshake time.Time
	RxBytes       uint64
	TxBytes       uint64
	RxPackets     uint64
	TxPackets     uint64
}

func (p *Peer) status() PeerStatus {
	st := PeerStatus{
		Name:      p.Name(),
		ID:        p.id.String(),
		Addrs:     p.addrs,
		Up:        p.current.Load() != nil,
		Direct:    p.direct(),
		RxBytes:   p.rxBytes.Load(),
		TxBytes:   p.txBytes.Load(),
		RxPackets: p.rxPackets.Load(),
		TxPackets: p.txPackets.Load(),
	}
	if ep, ok := p.Endpoint(); ok {
		st.Endpoint, st.Transport = ep.String(), "udp"
	}
	if t := p.lastHandshake.Load(); t != 0 {
		st.LastHandshake = time.Unix(0, t)
	}
	return st
}
