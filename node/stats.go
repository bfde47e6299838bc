package node

import (
	"errors"
	"reflect"
	"sync/atomic"

	"github.com/x0tta6bl4/x0t/handshake"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/session"
	"github.com/x0tta6bl4/x0t/wire"
)

// Stats counts what the node did and, above all, what it refused and why. Every
// dropped packet lands in exactly one Drop* or HS* counter.
type Stats struct {
	RxPackets atomic.Uint64 // authenticated data packets received
	RxBytes   atomic.Uint64 // plaintext bytes delivered to the device
	TxPackets atomic.Uint64 // data packets sent
	TxBytes   atomic.Uint64 // plaintext bytes sent

	HandshakesSent      atomic.Uint64 // initiations sent (including retries)
	HandshakesCompleted atomic.Uint64 // sessions established, either role
	CookiesSent         atomic.Uint64 // cookie replies sent while under load
	Keepalives          atomic.Uint64 // keepalives sent
	Staged              atomic.Uint64 // outbound packets that waited for a session
	Forwarded           atomic.Uint64 // packets relayed for other nodes
	LinkUps             atomic.Uint64 // links to neighbours that came up
	LinkDowns           atomic.Uint64 // links to neighbours found dead
	RouteChanges        atomic.Uint64 // new routing tables installed
	Failovers           atomic.Uint64 // destinations moved to their alternate next hop when a link died
	Rekeys              atomic.Uint64 // handshakes completed with a peer that already had a session (either role)
	HandshakesTimedOut  atomic.Uint64 // our initiations that went unanswered until the retry timer fired
	BusyPollReady       atomic.Uint64 // low-latency mode: polls that saw a packet arrive (or waiting) before the window closed
	BusyPollExpired     atomic.Uint64 // low-latency mode: polls whose window closed with nothing to read

	DropNoRoute        atomic.Uint64 // outbound packet for an address no peer owns
	DropStageFull      atomic.Uint64 // outbound packet while the session was not up and the queue was full
	DropUnknownSession atomic.Uint64 // data packet whose receiver index is unknown
	DropAuth           atomic.Uint64 // data packet that failed AEAD authentication
	DropReplay         atomic.Uint64 // data packet replayed or older than the window
	DropExpired        atomic.Uint64 // data packet on an expired keypair
	DropSpoofedSource  atomic.Uint64 // decrypted packet whose source address is not the peer's
	DropPolicy         atomic.Uint64 // decrypted packet the mesh policy does not allow
	DropMalformed      atomic.Uint64 // undecodable datagram or inner packet
	DropQueueFull      atomic.Uint64 // handshake datagram or message dropped: a handshake queue was full
	DropFragment       atomic.Uint64 // fragment inconsistent, over limits or expired
	DropHopLimit       atomic.Uint64 // forwarded packet whose hop limit ran out (a loop or a long path)
	DropTooBig         atomic.Uint64 // outbound packet too big for its relayed path (answered by PacketTooBigSent)
	PacketTooBigSent   atomic.Uint64 // ICMP packet-too-big messages written to the device
	RouteRejected      atomic.Uint64 // routing message refused (forged, replayed, malformed, rate-limited)

	HSBadMAC           atomic.Uint64 // handshake message with a bad mac1
	HSDecrypt          atomic.Uint64 // handshake message that does not authenticate (tampered or not for us)
	HSCertWrongCA      atomic.Uint64 // initiator certificate from another CA
	HSCertExpired      atomic.Uint64 // initiator certificate expired or not yet valid
	HSCertSignature    atomic.Uint64 // initiator certificate with a broken signature half
	HSCertRevoked      atomic.Uint64 // initiator certificate of a revoked node
	HSCertOther        atomic.Uint64 // initiator certificate malformed
	HSReplay           atomic.Uint64 // replayed initiation
	HSFlood            atomic.Uint64 // initiations from one peer faster than the limit
	HSRateLimited      atomic.Uint64 // handshake messages over the per-address rate while under load
	HSUnexpected       atomic.Uint64 // response or cookie reply nobody waits for
	HSMalformedMessage atomic.Uint64 // handshake message that does not decode

	// Actions the MAPE-K loop issued (heal.ActionType), counted on the
	// control loop when issued.
	HealReroute         atomic.Uint64
	HealRestore         atomic.Uint64
	HealRekey           atomic.Uint64
	HealQuarantine      atomic.Uint64
	HealAlert           atomic.Uint64
	HealSwitchTransport atomic.Uint64
	HealLowerMTU        atomic.Uint64
}

// Snapshot returns every counter by name.
func (s *Stats) Snapshot() map[string]uint64 {
	out := map[string]uint64{}
	v := reflect.ValueOf(s).Elem()
	for i := range v.NumField() {
		out[v.Type().Field(i).Name] = v.Field(i).Addr().Interface().(*atomic.Uint64).Load()
	}
	return out
}

// countOpenError files a data packet that Open refused.
func (s *Stats) countOpenError(err error) {
	switch {
	case errors.Is(err, session.ErrReplay):
		s.DropReplay.Add(1)
	case errors.Is(err, session.ErrExpired):
		s.DropExpired.Add(1)
	default:
		s.DropAuth.Add(1)
	}
}

// countHandshakeError files a refused handshake message by reason.
func (s *Stats) countHandshakeError(err error) {
	switch {
	case errors.Is(err, handshake.ErrReplay):
		s.HSReplay.Add(1)
	case errors.Is(err, handshake.ErrFlood):
		s.HSFlood.Add(1)
	case errors.Is(err, identity.ErrCertWrongIssuer):
		s.HSCertWrongCA.Add(1)
	case errors.Is(err, identity.ErrCertExpired), errors.Is(err, identity.ErrCertNotYetValid):
		s.HSCertExpired.Add(1)
	case errors.Is(err, identity.ErrBadEd25519Signature), errors.Is(err, identity.ErrBadMLDSASignature):
		s.HSCertSignature.Add(1)
	case errors.Is(err, identity.ErrRevoked):
		s.HSCertRevoked.Add(1)
	case errors.Is(err, handshake.ErrCertificate):
		s.HSCertOther.Add(1)
	case errors.Is(err, handshake.ErrDecrypt), errors.Is(err, handshake.ErrWrongResponse):
		s.HSDecrypt.Add(1)
	case errors.Is(err, wire.ErrShort), errors.Is(err, wire.ErrMalformed), errors.Is(err, wire.ErrReserved),
		errors.Is(err, wire.ErrType), errors.Is(err, handshake.ErrSuite):
		s.HSMalformedMessage.Add(1)
	default:
		s.HSDecrypt.Add(1)
	}
}
