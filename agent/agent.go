package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/netmap"
	"github.com/x0tta6bl4/x0t/node"
	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/policy"
	"github.com/x0tta6bl4/x0t/transport"
)

// Client is what the agent needs from the control plane (controlclient
// implements it; tests use a fake).
type Client interface {
	Enroll(ctx context.Context, req *api.EnrollRequest) (*api.NodeResponse, error)
	Status(ctx context.Context) (*api.NodeResponse, error)
	// StreamNetmap calls fn for every signed delta until ctx ends or the stream
	// breaks; it returns the error that ended it.
	StreamNetmap(ctx context.Context, since uint64, fn func(*netmap.Signed) error) error
	Heartbeat(ctx context.Context, hb *api.Heartbeat) error
	Renew(ctx context.Context) (*api.NodeResponse, error)
}

// ErrRevoked means the control plane revoked this node.
var ErrRevoked = api.ErrRevoked

// Options configure an enrolled node.
type Options struct {
	Token     string         // join token; needed only until the node is enrolled
	Name      string         // node name at enrollment
	TUN       string         // kernel TUN name, unless Netstack
	Netstack  bool           // userspace netstack instead of a TUN
	MTU       int            // overlay MTU (0: default)
	BusyPoll  time.Duration  // low-latency mode's window (node.Config.BusyPoll; 0: off)
	Listen    netip.AddrPort // UDP underlay address
	Endpoints []string       // addresses peers should use; default: this host's addresses with Listen's port
	Logger    *slog.Logger
	// Progress, if set, is called when the node starts waiting for an
	// administrator's approval, with a description of the wait; the
	// function it returns is called once when the wait ends (nil error:
	// approved). The CLI shows a spinner with it on a terminal; the agent
	// itself only logs, so it stays free of terminal handling.
	Progress func(what string) (end func(error))

	// WrapConn, if set, wraps the underlay socket (tests and the demo use it
	// to cut links).
	WrapConn func(transport.Conn) transport.Conn

	PollInterval      time.Duration // approval polling (default 2 s)
	HeartbeatInterval time.Duration // default 10 s
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PollInterval == 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 10 * time.Second
	}
	if !o.Listen.IsValid() {
		o.Listen = netip.MustParseAddrPort("0.0.0.0:4242")
	}
}

// Enroll makes sure st holds an approved certificate: it enrolls with the token
// if the node never did, then waits for approval.
func Enroll(ctx context.Context, c Client, st *State, opt Options) error {
	opt.defaults()
	if st.Cert != nil {
		return nil
	}
	var resp *api.NodeResponse
	var err error
	if st.CA == nil { // never answered: enroll
		if opt.Token == "" {
			return errors.New("agent: this node is not enrolled: a join token (--token) is needed")
		}
		pub := st.Key.PublicKeys()
		keys := api.PublicKeys{DH: pub.DH, KEM: pub.KEM, Signing: pub.Signing}
		req := &api.EnrollRequest{Token: opt.Token, Name: st.Name, Keys: keys, Endpoints: endpoints(opt),
			Proof: st.Key.Signing.Sign(api.LabelEnroll, api.EnrollProof(opt.Token, st.Name, keys))}
		if resp, err = c.Enroll(ctx, req); err != nil {
			return fmt.Errorf("agent: enroll: %w", err)
		}
		opt.Logger.Info("enrolled", "node", st.Name, "id", resp.NodeID, "status", resp.Status, "mesh", resp.Mesh)
	} else if resp, err = c.Status(ctx); err != nil {
		return fmt.Errorf("agent: status: %w", err)
	}
	var endWait func(error) // set while a wait is shown
	waited := false
	result := func(err error) error {
		if endWait != nil {
			endWait(err)
		}
		return err
	}
	for {
		if err := st.absorb(resp); err != nil {
			return result(err)
		}
		switch resp.Status {
		case api.StatusApproved:
			if waited {
				opt.Logger.Info("approved", "node", st.Name, "id", st.NodeID)
			}
			return result(nil)
		case api.StatusRevoked:
			return result(ErrRevoked)
		}
		if !waited {
			opt.Logger.Info("waiting for an administrator to approve this node", "node", st.Name, "id", st.NodeID)
			if opt.Progress != nil {
				endWait = opt.Progress(fmt.Sprintf("waiting for approval of node %s (%s)", st.Name, st.NodeID[:8]))
			}
			waited = true
		}
		select {
		case <-ctx.Done():
			return result(ctx.Err())
		case <-time.After(opt.PollInterval):
		}
		if resp, err = c.Status(ctx); err != nil {
			opt.Logger.Warn("status poll failed", "err", err)
			resp = &api.NodeResponse{Status: api.StatusPending, NodeID: st.NodeID}
		}
	}
}

// absorb keeps what the control plane returned, after checking it.
func (st *State) absorb(resp *api.NodeResponse) error {
	if resp.NodeID != "" && resp.NodeID != st.NodeID {
		return fmt.Errorf("agent: control plane answered for node %s, we are %s", resp.NodeID, st.NodeID)
	}
	if len(resp.CACert) > 0 {
		ca, err := identity.ParseCertificate(resp.CACert)
		if err != nil {
			return fmt.Errorf("agent: CA certificate: %w", err)
		}
		if err := ca.VerifySelfSigned(time.Now()); err != nil {
			return fmt.Errorf("agent: CA certificate: %w", err)
		}
		switch {
		case st.CA == nil:
			st.CA = ca
			st.Mesh = resp.Mesh
		case st.CA.Issuer != ca.Issuer:
			return errors.New("agent: the control plane presented another mesh CA")
		}
		// A known CA is kept as is: the netmap loop reads it concurrently.
	}
	if len(resp.Cert) > 0 && resp.Status == api.StatusApproved {
		if st.CA == nil {
			return errors.New("agent: certificate without a CA")
		}
		cert, err := identity.ParseCertificate(resp.Cert)
		if err != nil {
			return fmt.Errorf("agent: certificate: %w", err)
		}
		if err := cert.Verify(st.CA, time.Now()); err != nil {
			return fmt.Errorf("agent: certificate: %w", err)
		}
		if cert.ID() != st.Key.PublicKeys().ID() {
			return errors.New("agent: the certificate is not for this node's keys")
		}
		if st.Cert != nil && st.Cert.Equal(cert) {
			return nil // nothing new
		}
		st.Cert = cert
	}
	return st.Save()
}

// endpoints lists where peers should send to this node. Before the socket is
// bound with port 0 there is nothing to say yet: heartbeats report it later.
func endpoints(opt Options) []string {
	if len(opt.Endpoints) > 0 {
		return opt.Endpoints
	}
	port := opt.Listen.Port()
	if port == 0 {
		return nil
	}
	if !opt.Listen.Addr().IsUnspecified() {
		return []string{opt.Listen.String()}
	}
	var out []string
	ifaces, _ := net.InterfaceAddrs()
	for _, a := range ifaces {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := p.Addr()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
			continue
		}
		if ip.Is4() && netip.MustParsePrefix("100.64.0.0/10").Contains(ip) {
			continue // our own overlay
		}
		if ip.Is6() && netip.MustParsePrefix("fd00::/8").Contains(ip) {
			continue
		}
		if ip.Is6() != opt.Listen.Addr().Is6() && opt.Listen.Addr() != netip.IPv6Unspecified() {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip, port).String())
	}
	return out
}

// Agent is a running enrolled node.
type Agent struct {
	st    *State
	opt   Options
	c     Client
	trust *identity.Trust
	node  *node.Node
	tun   *overlay.TUN
	stack *overlay.Netstack
	conn  *transport.UDPConn
	start time.Time

	// Fixed at New, read by the netmap loop while the identity loop may
	// replace st.Cert.
	caKey  *identity.VerifyingKey
	mesh   string
	nodeID string

	mu sync.Mutex
	nm *netmap.Netmap
}

// New builds the node of an approved state.
func New(st *State, c Client, opt Options) (*Agent, error) {
	opt.defaults()
	if st.Cert == nil || st.CA == nil {
		return nil, errors.New("agent: node not approved yet")
	}
	trust, err := identity.NewTrust(st.CA, time.Now())
	if err != nil {
		return nil, err
	}
	caKey, err := st.CA.VerifyingKey()
	if err != nil {
		return nil, err
	}
	a := &Agent{st: st, opt: opt, c: c, trust: trust, start: time.Now(), caKey: caKey, mesh: st.CA.Mesh, nodeID: st.NodeID}
	var dev overlay.Device
	if opt.Netstack {
		var addrs []netip.Addr
		for _, p := range st.Cert.Addrs {
			addrs = append(addrs, p.Addr())
		}
		if a.stack, err = overlay.NewNetstack(addrs, opt.MTU); err != nil {
			return nil, err
		}
		dev = a.stack.Device()
	} else {
		if a.tun, err = overlay.CreateTUN(overlay.TUNConfig{Name: opt.TUN, MTU: opt.MTU, Addrs: st.Cert.Addrs}); err != nil {
			return nil, err
		}
		dev = a.tun.Device()
	}
	if a.conn, err = transport.ListenUDP(opt.Listen); err != nil {
		a.close()
		return nil, err
	}
	a.opt.Listen = a.conn.LocalAddr() // the bound port, for heartbeats
	var conn transport.Conn = a.conn
	if opt.WrapConn != nil {
		conn = opt.WrapConn(conn)
	}
	a.node, err = node.New(node.Config{Key: st.Key, Cert: st.Cert, Trust: trust, Device: dev, Conn: conn,
		Keepalive: 25 * time.Second, BusyPoll: opt.BusyPoll, Logger: opt.Logger})
	if err != nil {
		a.close()
		return nil, err
	}
	// Until the first netmap arrives, accept nothing new.
	a.node.SetRules(&policyNone)
	return a, nil
}

// Conn returns the underlay socket.
func (a *Agent) Conn() *transport.UDPConn { return a.conn }

// Node returns the running node.
func (a *Agent) Node() *node.Node { return a.node }

// Netstack returns the userspace stack, if the agent uses one.
func (a *Agent) Netstack() *overlay.Netstack { return a.stack }

// Run runs the node, follows the netmap, heartbeats and renews until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for _, loop := range []func(context.Context) error{a.runNode, a.followNetmap, a.heartbeats, a.identityLoop} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loop(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	a.close()
	a.node.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (a *Agent) runNode(ctx context.Context) error {
	err := a.node.Run(ctx)
	a.close() // unblocks the packet loops
	return err
}

func (a *Agent) close() {
	if a.conn != nil {
		a.conn.Close()
	}
	if a.tun != nil {
		a.tun.Close()
	}
	if a.stack != nil {
		a.stack.Close()
	}
}

// followNetmap keeps a netmap stream open, reconnecting with jittered backoff;
// while the control plane is unreachable the node keeps the last netmap.
func (a *Agent) followNetmap(ctx context.Context) error {
	backoff := 500 * time.Millisecond
	for {
		since := uint64(0)
		if nm := a.netmap(); nm != nil {
			since = nm.Version
		}
		err := a.c.StreamNetmap(ctx, since, a.applySigned)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrRevoked) {
			return err
		}
		a.opt.Logger.Warn("netmap stream ended; keeping the last netmap", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff + rand.N(backoff/2)):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// applySigned verifies, applies and installs one netmap delta. Anything that
// does not verify or apply is refused and changes nothing.
func (a *Agent) applySigned(s *netmap.Signed) error {
	d, err := netmap.Open(s, a.caKey)
	if err != nil {
		a.opt.Logger.Warn("netmap refused", "err", err)
		return nil // keep the stream; a bad message changes nothing
	}
	if d.Node != a.nodeID || d.Mesh != a.mesh {
		a.opt.Logger.Warn("netmap for another node or mesh refused", "node", d.Node, "mesh", d.Mesh)
		return nil
	}
	a.mu.Lock()
	next, err := netmap.Apply(a.nm, d)
	a.mu.Unlock()
	if err != nil {
		// Out of order: reconnect for a full snapshot.
		return fmt.Errorf("agent: netmap: %w", err)
	}
	if err := a.install(next); err != nil {
		if errors.Is(err, ErrRevoked) {
			return err
		}
		a.opt.Logger.Warn("netmap not installed", "err", err)
		return nil
	}
	a.mu.Lock()
	a.nm = next
	a.mu.Unlock()
	return nil
}

// install makes the node match a netmap: revocations first, then rules, then peers.
func (a *Agent) install(nm *netmap.Netmap) error {
	var revoked []identity.NodeID
	for _, h := range nm.Revoked {
		id, err := parseNodeID(h)
		if err != nil {
			return err
		}
		if id.String() == a.nodeID {
			return ErrRevoked
		}
		revoked = append(revoked, id)
	}
	var peers []node.PeerConfig
	for _, p := range nm.Peers {
		cert, err := a.trust.ParseVerified(p.Cert, time.Now())
		if err != nil {
			a.opt.Logger.Warn("netmap peer refused", "peer", p.Name, "err", err)
			continue
		}
		if cert.ID().String() != p.ID {
			a.opt.Logger.Warn("netmap peer id does not match its certificate", "peer", p.Name)
			continue
		}
		pc := node.PeerConfig{Cert: cert}
		for _, e := range p.Endpoints {
			if ap, err := netip.ParseAddrPort(e); err == nil {
				pc.Endpoints = append(pc.Endpoints, ap)
			}
		}
		peers = append(peers, pc)
	}
	a.node.Revoke(revoked...)
	rules := nm.Rules
	if err := a.node.SetRules(&rules); err != nil {
		return err
	}
	if err := a.node.SetPeers(peers); err != nil {
		a.opt.Logger.Warn("some peers refused", "err", err)
	}
	a.opt.Logger.Info("netmap installed", "version", nm.Version, "peers", len(peers), "rules", len(rules.Allow), "revoked", len(revoked))
	return nil
}

func (a *Agent) netmap() *netmap.Netmap {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nm
}

// Netmap returns the netmap the node runs with (nil before the first).
func (a *Agent) Netmap() *netmap.Netmap { return a.netmap() }

func (a *Agent) heartbeats(ctx context.Context) error {
	t := time.NewTicker(a.opt.HeartbeatInterval)
	defer t.Stop()
	for {
		snap := a.node.Health(10)
		hb := &api.Heartbeat{Endpoints: endpoints(a.opt), Health: string(snap.Health.State), Reasons: snap.Health.Reasons,
			Uptime: int64(time.Since(a.start).Seconds())}
		for _, p := range a.node.Peers() {
			hb.Peers = append(hb.Peers, api.PeerTelemetry{ID: p.ID, RxBytes: p.RxBytes, TxBytes: p.TxBytes, LastHandshake: p.LastHandshake})
		}
		for _, l := range a.node.Links() {
			for i := range hb.Peers {
				if hb.Peers[i].ID == l.ID {
					hb.Peers[i].RTTMillis, hb.Peers[i].Loss, hb.Peers[i].Link = float64(l.RTT)/1e6, l.Loss, l.State
				}
			}
		}
		// The MAPE-K loop's incidents go to the control plane with every heartbeat.
		for _, inc := range snap.Incidents {
			hb.Incidents = append(hb.Incidents, api.IncidentReport(inc.Brief()))
		}
		if err := a.c.Heartbeat(ctx, hb); err != nil && ctx.Err() == nil {
			a.opt.Logger.Debug("heartbeat failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// StatusInterval is how often the agent asks the control plane about its own
// state: a rename, a tag change or an administrator's renewal reissues the
// node's certificate, and a netmap never describes the node itself.
const StatusInterval = 30 * time.Second

// identityLoop keeps the node's own certificate current: it renews when two
// thirds of its lifetime have passed, and picks up certificates the control
// plane reissued. It ends with ErrRevoked when the node is revoked.
func (a *Agent) identityLoop(ctx context.Context) error {
	for {
		cert := a.st.Cert
		due := cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) * 2 / 3)
		var resp *api.NodeResponse
		var err error
		if time.Now().After(due) {
			resp, err = a.c.Renew(ctx)

		} else {
			resp, err = a.c.Status(ctx)
		}
		if err == nil && resp.Status == api.StatusRevoked {
			err = ErrRevoked
		}
		if err == nil {
			err = a.st.absorb(resp)
		}
		if err == nil && a.st.Cert != cert {
			if err = a.node.SetCert(a.st.Cert); err == nil {
				a.opt.Logger.Info("certificate updated", "valid_until", a.st.Cert.NotAfter, "tags", a.st.Cert.Tags)
			}
		}
		if errors.Is(err, ErrRevoked) {
			return ErrRevoked
		}
		wait := StatusInterval
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			a.opt.Logger.Warn("certificate check failed; keeping the current one", "err", err)
		}
		if until := time.Until(due); until > 0 && until < wait {
			wait = until
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func parseNodeID(h string) (identity.NodeID, error) {
	var id identity.NodeID
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != identity.NodeIDSize {
		return id, fmt.Errorf("agent: bad node id %q", h)
	}
	copy(id[:], b)
	return id, nil
}

// policyNone denies every new flow: a node never runs wider open than its policy.
var policyNone = policy.Rules{}
