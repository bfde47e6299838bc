package node

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/session"
	"github.com/x0tta6bl4/x0t/transport"
	"github.com/x0tta6bl4/x0t/wire"
)

// controlLoop owns handshakes and timers.
func (n *Node) controlLoop() error {
	ticker := time.NewTicker(tickInterval)
	defer ticker.Stop()
	meshTicker := time.NewTicker(meshTickInterval)
	defer meshTicker.Stop()
	healTicker := time.NewTicker(healInterval)
	defer healTicker.Stop()
	lastUnknownKick := map[netip.AddrPort]time.Time{}
	var lastFlowSweep time.Time

	// Contact every peer we know an endpoint for at once, so a restarted node
	// re-establishes its sessions without waiting for traffic.
	for _, p := range n.peers.Load().byID {
		if _, ok := p.Endpoint(); ok {
			n.service(p, n.now())
		}
	}
	for {
		select {
		case <-n.closed:
			return nil
		case m := <-n.work:
			n.handleHandshakeMsg(m)
		case fn := <-n.ops:
			fn()
		case lm := <-n.linkMsgs:
			n.handleLinkMsg(lm)
		case <-meshTicker.C:
			n.meshTick(time.Now())
		case <-healTicker.C:
			n.healTick(time.Now()) // heal watches the network: real time
		case p := <-n.kicks:
			p.kicked.Store(false)
			if n.peers.Load().byID[p.id] == p { // not removed meanwhile
				n.service(p, n.now())
			}
		case src := <-n.unknown:
			// Data for a session we do not have, from a peer's address: the peer
			// thinks a session exists (we restarted, or it expired here). Offer a
			// new handshake, at most once a second per address.
			now := n.now()
			if now.Sub(lastUnknownKick[src]) < unknownKickInterval {
				continue
			}
			lastUnknownKick[src] = now
			for _, p := range n.peers.Load().byID {
				if ep, ok := p.Endpoint(); ok && ep == src && p.pending == nil {
					n.initiate(p, now)
				}
			}
		case <-ticker.C:
			now := n.now()
			for _, p := range n.peers.Load().byID {
				n.timers(p, now)
			}
			if now.Sub(lastFlowSweep) >= flowSweepInterval {
				n.fw.flows.expire(now)
				lastFlowSweep = now
			}
			if len(lastUnknownKick) > 1024 {
				clear(lastUnknownKick)
			}
		}
	}
}

// flowSweepInterval is how often expired tracked flows are dropped.
const flowSweepInterval = 10 * time.Second

// rekeyJitter spreads rekeys over a few seconds, so that when both sides hold
// keypairs they initiated (after both started handshakes at once), one of them
// rekeys first and the other follows its lead instead of rekeying too.
const rekeyJitter = 4 * time.Second

// rekeyDue reports whether we should replace kp, a keypair we initiated: it is
// old (by RekeyAfterTime less a per-keypair jitter) or has sent many packets.
func rekeyDue(kp *session.Keypair, now time.Time) bool {
	if !kp.Initiator {
		return false
	}
	jitter := time.Duration(kp.LocalIndex%1000) * rekeyJitter / 1000
	return kp.NeedsRekey(now.Add(jitter))
}

// usable reports whether kp can carry data now.
func usable(kp *session.Keypair, now time.Time) bool {
	return kp != nil && !kp.Expired(now)
}

// service makes progress for a peer that has something to send: start a
// handshake if needed, and send staged packets once a session is up.
func (n *Node) service(p *Peer, now time.Time) {
	kp := p.current.Load()
	if (!usable(kp, now) || rekeyDue(kp, now)) && p.pending == nil && !p.freshNext(now) {
		n.initiate(p, now)
	}
	if usable(kp, now) {
		n.flushStaged(p, kp, now)
	}
}

// timers runs a peer's periodic duties.
func (n *Node) timers(p *Peer, now time.Time) {
	if dropped := p.expire(now); len(dropped) > 0 {
		n.forget(dropped)
	}
	kp := p.current.Load()
	_, hasEndpoint := p.Endpoint()

	// Retransmit an unanswered initiation with exponential backoff.
	if p.pending != nil {
		wait := min(retransmitBase<<min(p.attempts-1, 4), retransmitMax)
		if now.Sub(p.pendingSentAt) >= wait {
			p.faults.handshakeFailures.Add(1)
			n.stats.HandshakesTimedOut.Add(1)
			n.dropPending(p)
			n.initiate(p, now)
		}
		return
	}
	// A fresh responder keypair awaits the initiator's first packet: the peer is
	// rekeying, so we need not.
	if p.freshNext(now) {
		return
	}
	switch {
	case kp == nil:
		// Neighbours are contacted eagerly; members reached through the mesh
		// only when there is traffic for them (service).
		if hasEndpoint {
			n.initiate(p, now)
		}
		return
	case rekeyDue(kp, now):
		n.initiate(p, now)
		return
	case !kp.Initiator && now.Sub(kp.Created) >= session.RekeyAfterTime+responderRekeyDelay:
		// The initiator should have rekeyed by now; it may be gone.
		n.initiate(p, now)
		return
	}

	lastSent := time.Unix(0, p.lastSent.Load())
	lastRecv := time.Unix(0, p.lastRecv.Load())
	// We keep sending but hear nothing: the peer may have lost the session.
	if p.lastSent.Load() > p.lastRecv.Load() && lastSent.Sub(lastRecv) >= newHandshakeAfter &&
		now.Sub(time.Unix(0, p.lastHandshake.Load())) >= newHandshakeAfter {
		n.initiate(p, now)
		return
	}
	// Answer received traffic so the peer knows the session is alive, and keep
	// NAT mappings open when configured to.
	if (p.lastRecv.Load() > p.lastSent.Load() && now.Sub(lastSent) >= passiveKeepalive) ||
		(n.cfg.Keepalive > 0 && now.Sub(lastSent) >= n.cfg.Keepalive) {
		n.sendKeepalive(p, kp, now)
	}
}

// initiate sends a new handshake initiation to p: straight to its endpoint,
// or through the mesh when the direct path is dead or unknown. When both exist
// and the direct one goes unanswered, attempts alternate between them.
func (n *Node) initiate(p *Peer, now time.Time) {
	ep, hasEP := p.Endpoint()
	direct := hasEP && !p.linkDown.Load()
	routed := n.nextHop(p.id, identity.NodeID{}) != nil
	switch {
	case direct && routed && p.attempts%2 == 1:
		direct = false
	case !direct && !routed:
		direct = hasEP // a link judged dead is still better than no attempt
	}
	if !direct && !routed {
		return
	}
	if p.pending != nil {
		n.dropPending(p)
	}
	idx := n.index.allocate(indexEntry{peer: p})
	in, err := n.hs.Initiate(p.cert.Load(), idx, n.suite)
	if err != nil {
		n.index.remove(idx)
		n.log.Warn("handshake initiation failed", "peer", p.Name(), "err", err)
		return
	}
	n.index.set(idx, indexEntry{peer: p, init: in})
	p.pending = in
	p.pendingSentAt = now
	p.attempts++
	// Rotate through configured endpoints when attempts go unanswered.
	if direct && p.attempts > 2 && len(p.configured) > 1 && p.current.Load() == nil {
		p.nextEndpoint = (p.nextEndpoint + 1) % len(p.configured)
		ep = p.configured[p.nextEndpoint]
		p.setEndpoint(ep)
	}
	p.cookies.AddMACs(in.Message, now)
	if direct {
		n.sendHandshake(nil, in.Message, ep, now)
	} else {
		n.sendHandshake(p, in.Message, netip.AddrPort{}, now)
	}
	in.Message = nil // a retry is a new initiation: do not hold 9 KiB per peer
	n.stats.HandshakesSent.Add(1)
}

func (n *Node) dropPending(p *Peer) {
	n.index.remove(p.pending.Sender())
	p.pending = nil
}

// sendHandshake sends a handshake message in fragments that fit a 1280 MTU:
// straight to the address to when through is nil, else through the mesh to
// the peer through (each fragment wrapped for, and sealed with, the next hop).
func (n *Node) sendHandshake(through *Peer, msg []byte, to netip.AddrPort, now time.Time) {
	var id [4]byte
	rand.Read(id[:])
	frags, err := wire.Fragments(msg, binary.LittleEndian.Uint32(id[:]))
	if err != nil {
		n.log.Error("fragmenting handshake message", "err", err)
		return
	}
	msgs := make([]transport.Message, 0, len(frags))
	for _, f := range frags {
		if through == nil {
			msgs = append(msgs, transport.Message{Buf: f, N: len(f), Addr: to})
			continue
		}
		via := n.nextHop(through.id, identity.NodeID{})
		if via == nil {
			n.stats.DropNoRoute.Add(1)
			return
		}
		kp, ep := via.current.Load(), via.endpoint.Load()
		if kp == nil || ep == nil {
			return
		}
		buf := make([]byte, offset+wire.ForwardHeaderSize+len(f)+wire.TagSize)
		wire.PutForwardHeader(buf[offset:], wire.DefaultHopLimit, through.id)
		copy(buf[offset+wire.ForwardHeaderSize:], f)
		l, err := kp.Seal(buf, wire.ForwardHeaderSize+len(f), now)
		if err != nil {
			return
		}
		msgs = append(msgs, transport.Message{Buf: buf[:l], N: l, Addr: *ep})
	}
	if err := n.cfg.Conn.WriteBatch(msgs); err != nil && !closedErr(err) {
		n.log.Debug("sending handshake message", "err", err)
	}
}

// handleHandshakeMsg runs a complete handshake message that the front stage
// admitted (see front.go).
func (n *Node) handleHandshakeMsg(m inboundMsg) {
	now := n.now()
	switch wire.PacketType(m.data) {
	case wire.TypeInitiation:
		n.handleInitiation(m, now)
	case wire.TypeResponse:
		n.handleResponse(m, now)
	case wire.TypeCookieReply:
		n.handleCookieReply(m.data, now)
	}
}

func (n *Node) handleInitiation(m inboundMsg, now time.Time) {
	msg, src := m.data, m.src
	inc, err := n.hs.Consume(msg)
	if err != nil {
		n.stats.countHandshakeError(err)
		n.log.Debug("initiation refused", "from", src, "err", err)
		return
	}
	p := n.peers.Load().byID[inc.Peer.ID()]
	if p == nil {
		// A member of the mesh we were not told about: its certificate is
		// valid, so accept it as a peer reachable at the address it came from.
		if p, err = n.AddPeer(PeerConfig{Cert: inc.Peer}); err != nil {
			n.stats.HSCertOther.Add(1)
			n.log.Info("initiation from unusable peer", "from", src, "err", err)
			return
		}
	}
	idx := n.index.allocate(indexEntry{peer: p})
	resp, keys, err := inc.Respond(idx)
	if err != nil {
		n.index.remove(idx)
		n.log.Warn("handshake response failed", "peer", p.Name(), "err", err)
		return
	}
	kp, err := session.NewKeypair(keys.Send, keys.Recv, keys.Suite, keys.LocalIndex, keys.RemoteIndex, false, now)
	if err != nil {
		n.index.remove(idx)
		n.log.Warn("keypair", "err", err)
		return
	}
	n.index.set(idx, indexEntry{peer: p, kp: kp})
	if p.current.Load() != nil {
		n.stats.Rekeys.Add(1)
	}
	n.forget(p.installResponder(kp))
	p.cookies.AddMACs(resp, now)
	if m.forwarded {
		n.sendHandshake(p, resp, netip.AddrPort{}, now) // back through the mesh
	} else {
		p.setEndpoint(src)
		n.sendHandshake(nil, resp, src, now)
	}
	n.stats.HandshakesCompleted.Add(1)
	p.lastHandshake.Store(now.UnixNano())
	n.log.Debug("handshake answered", "peer", p.Name(), "from", src, "suite", SuiteName(keys.Suite))
}

func (n *Node) handleResponse(m inboundMsg, now time.Time) {
	msg, src := m.data, m.src
	r, err := wire.ParseResponse(msg)
	if err != nil {
		n.stats.HSMalformedMessage.Add(1)
		return
	}
	e, ok := n.index.lookup(r.Receiver)
	if !ok || e.init == nil || e.peer.pending != e.init {
		n.stats.HSUnexpected.Add(1)
		return
	}
	p := e.peer
	keys, err := e.init.Finish(msg)
	if err != nil {
		n.stats.countHandshakeError(err)
		return
	}
	kp, err := session.NewKeypair(keys.Send, keys.Recv, keys.Suite, keys.LocalIndex, keys.RemoteIndex, true, now)
	if err != nil {
		n.log.Warn("keypair", "err", err)
		return
	}
	p.pending = nil
	p.attempts = 0
	n.index.set(keys.LocalIndex, indexEntry{peer: p, kp: kp})
	if p.current.Load() != nil {
		n.stats.Rekeys.Add(1)
	}
	n.forget(p.installInitiator(kp))
	if !m.forwarded {
		p.setEndpoint(src)
	}
	p.lastHandshake.Store(now.UnixNano())
	n.stats.HandshakesCompleted.Add(1)
	n.log.Debug("handshake complete", "peer", p.Name(), "endpoint", src, "suite", SuiteName(keys.Suite))
	// Confirm the session to the responder at once: with data if any waits,
	// else with a keepalive.
	if !n.flushStaged(p, kp, now) {
		n.sendKeepalive(p, kp, now)
	}
}

func (n *Node) handleCookieReply(msg []byte, now time.Time) {
	r, err := wire.ParseCookieReply(msg)
	if err != nil {
		n.stats.HSMalformedMessage.Add(1)
		return
	}
	e, ok := n.index.lookup(r.Receiver)
	if !ok || (e.init == nil && e.kp == nil) {
		n.stats.HSUnexpected.Add(1)
		return
	}
	if err := e.peer.cookies.ConsumeReply(r, now); err != nil {
		n.stats.HSUnexpected.Add(1)
		return
	}
	if e.init == nil {
		// An answer to our response: the peer is under load. A response can
		// not be sent again, but the peer's next initiation gets one with
		// the cookie's mac2 (without it, every response to a node under
		// load would be refused for as long as the load lasts).
		return
	}
	// Retry at once with the cookie.
	n.initiate(e.peer, now)
}

// forget removes dropped keypairs from the index table.
func (n *Node) forget(kps []*session.Keypair) {
	idxs := make([]uint32, 0, len(kps))
	for _, kp := range kps {
		idxs = append(idxs, kp.LocalIndex)
	}
	n.index.remove(idxs...)
}

// flushStaged seals and sends packets that waited for a session. It reports
// whether anything was sent.
func (n *Node) flushStaged(p *Peer, kp *session.Keypair, now time.Time) bool {
	staged := p.takeStaged()
	if len(staged) == 0 {
		return false
	}
	msgs := make([]transport.Message, 0, len(staged))
	for _, pkt := range staged {
		buf := make([]byte, headroom+len(pkt)+2*wire.TagSize)
		copy(buf[headroom:], pkt)
		m, err := n.encap(p, buf, len(pkt), new(session.RelayScratch), now)
		if errors.Is(err, errTooBig) {
			n.stats.DropTooBig.Add(1) // the sender's retransmission gets its answer
			continue
		}
		if err != nil {
			n.stats.DropNoRoute.Add(1)
			continue
		}
		msgs = append(msgs, m)
		p.txPackets.Add(1)
		p.txBytes.Add(uint64(len(pkt)))
		n.stats.TxBytes.Add(uint64(len(pkt)))
	}
	if len(msgs) == 0 {
		return false
	}
	n.stats.TxPackets.Add(uint64(len(msgs)))
	p.lastSent.Store(now.UnixNano())
	if err := n.cfg.Conn.WriteBatch(msgs); err != nil && !closedErr(err) {
		n.log.Debug("sending staged packets", "err", err)
	}
	return true
}

// sendKeepalive sends an empty data packet on the peer's session.
func (n *Node) sendKeepalive(p *Peer, kp *session.Keypair, now time.Time) {
	if !usable(kp, now) {
		return
	}
	buf := make([]byte, headroom+2*wire.TagSize)
	m, err := n.encap(p, buf, 0, new(session.RelayScratch), now)
	if err != nil {
		return
	}
	p.lastSent.Store(now.UnixNano())
	n.stats.Keepalives.Add(1)
	if err := n.cfg.Conn.WriteBatch([]transport.Message{m}); err != nil && !closedErr(err) {
		n.log.Debug("sending keepalive", "err", err)
	}
}
