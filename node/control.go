package node

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/x0tta6bl4/x0t/session"
	"github.com/x0tta6bl4/x0t/transport"
	"github.com/x0tta6bl4/x0t/wire"
)

// controlLoop owns handshakes and timers.
func (n *Node) controlLoop() error {
	ticker := time.NewTicker(tickInterval)
	defer ticker.Stop()
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
			n.dropPending(p)
			if hasEndpoint {
				n.initiate(p, now)
			}
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

// initiate sends a new handshake initiation to p.
func (n *Node) initiate(p *Peer, now time.Time) {
	ep, ok := p.Endpoint()
	if !ok {
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
	if p.attempts > 1 && len(p.configured) > 1 && p.current.Load() == nil {
		p.nextEndpoint = (p.nextEndpoint + 1) % len(p.configured)
		ep = p.configured[p.nextEndpoint]
		p.setEndpoint(ep)
	}
	p.cookies.AddMACs(in.Message, now)
	n.sendFragmented(in.Message, ep)
	in.Message = nil // a retry is a new initiation: do not hold 9 KiB per peer
	n.stats.HandshakesSent.Add(1)
}

func (n *Node) dropPending(p *Peer) {
	n.index.remove(p.pending.Sender())
	p.pending = nil
}

// sendFragmented sends a handshake message in fragments that fit a 1280 MTU.
func (n *Node) sendFragmented(msg []byte, to netip.AddrPort) {
	var id [4]byte
	rand.Read(id[:])
	frags, err := wire.Fragments(msg, binary.LittleEndian.Uint32(id[:]))
	if err != nil {
		n.log.Error("fragmenting handshake message", "err", err)
		return
	}
	msgs := make([]transport.Message, len(frags))
	for i, f := range frags {
		msgs[i] = transport.Message{Buf: f, N: len(f), Addr: to}
	}
	if err := n.cfg.Conn.WriteBatch(msgs); err != nil && !closedErr(err) {
		n.log.Debug("sending handshake message", "to", to, "err", err)
	}
}

// handleHandshakeMsg runs a complete handshake message that the front stage
// admitted (see front.go).
func (n *Node) handleHandshakeMsg(m inboundMsg) {
	now := n.now()
	switch wire.PacketType(m.data) {
	case wire.TypeInitiation:
		n.handleInitiation(m.data, m.src, now)
	case wire.TypeResponse:
		n.handleResponse(m.data, m.src, now)
	case wire.TypeCookieReply:
		n.handleCookieReply(m.data, now)
	}
}

func (n *Node) handleInitiation(msg []byte, src netip.AddrPort, now time.Time) {
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
	n.forget(p.installResponder(kp))
	p.setEndpoint(src)
	p.cookies.AddMACs(resp, now)
	n.sendFragmented(resp, src)
	n.stats.HandshakesCompleted.Add(1)
	p.lastHandshake.Store(now.UnixNano())
	n.log.Debug("handshake answered", "peer", p.Name(), "from", src, "suite", SuiteName(keys.Suite))
}

func (n *Node) handleResponse(msg []byte, src netip.AddrPort, now time.Time) {
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
	n.forget(p.installInitiator(kp))
	p.setEndpoint(src)
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
	if !ok || e.init == nil {
		n.stats.HSUnexpected.Add(1)
		return
	}
	if err := e.peer.cookies.ConsumeReply(r, now); err != nil {
		n.stats.HSUnexpected.Add(1)
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
	ep, ok := p.Endpoint()
	if !ok {
		return false
	}
	msgs := make([]transport.Message, 0, len(staged))
	for _, pkt := range staged {
		buf := make([]byte, offset+len(pkt)+wire.TagSize)
		copy(buf[offset:], pkt)
		l, err := kp.Seal(buf, len(pkt), now)
		if err != nil {
			continue
		}
		msgs = append(msgs, transport.Message{Buf: buf[:l], N: l, Addr: ep})
		p.txPackets.Add(1)
		p.txBytes.Add(uint64(len(pkt)))
		n.stats.TxBytes.Add(uint64(len(pkt)))
	}
	n.stats.TxPackets.Add(uint64(len(msgs)))
	p.lastSent.Store(now.UnixNano())
	if err := n.cfg.Conn.WriteBatch(msgs); err != nil && !closedErr(err) {
		n.log.Debug("sending staged packets", "err", err)
	}
	return len(msgs) > 0
}

// sendKeepalive sends an empty data packet.
func (n *Node) sendKeepalive(p *Peer, kp *session.Keypair, now time.Time) {
	ep, ok := p.Endpoint()
	if !ok || !usable(kp, now) {
		return
	}
	buf := make([]byte, offset+wire.TagSize)
	l, err := kp.Seal(buf, 0, now)
	if err != nil {
		return
	}
	p.lastSent.Store(now.UnixNano())
	n.stats.Keepalives.Add(1)
	if err := n.cfg.Conn.WriteBatch([]transport.Message{{Buf: buf[:l], N: l, Addr: ep}}); err != nil && !closedErr(err) {
		n.log.Debug("sending keepalive", "err", err)
	}
}
