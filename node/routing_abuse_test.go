package node_test

import (
	"crypto/rand"
	"encoding/binary"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/heal"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/lab"
	"github.com/x0tta6bl4/x0t/route"
	"github.com/x0tta6bl4/x0t/session"
	"github.com/x0tta6bl4/x0t/wire"
)

// sendLinkMsg sends a link message on the raw peer's session, in link
// fragments as a node would, since adverts exceed one packet.
func (r *rawPeer) sendLinkMsg(kp *session.Keypair, msg []byte) {
	var id [4]byte
	rand.Read(id[:])
	frags, err := wire.Fragments(msg, binary.LittleEndian.Uint32(id[:]))
	if err != nil {
		r.t.Fatal(err)
	}
	for _, f := range frags {
		pt := append([]byte{wire.LinkFragment}, f...)
		buf := make([]byte, wire.DataOverhead+len(pt))
		copy(buf[wire.DataHeaderSize:], pt)
		n, err := kp.Seal(buf, len(pt), time.Now())
		if err != nil {
			r.t.Fatal(err)
		}
		r.send(buf[:n])
	}
}

func advert(t *testing.T, origin identity.NodeID, seq uint64, to identity.NodeID, sign func([]byte) []byte) []byte {
	t.Helper()
	body, err := route.EncodeLSABody(route.LSA{Origin: origin, Seq: seq, Links: []route.Link{{Neighbour: to, Metric: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	return append(body, sign(body)...)
}

func waitIncident(t *testing.T, n *lab.Node, subject identity.NodeID, kind heal.Kind) heal.Incident {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, inc := range n.Node.Health(50).Incidents {
			if inc.Subject == subject.String() && inc.Kind == kind {
				return inc
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s incident about %s: %+v", kind, subject.Short(), n.Node.Health(50).Incidents)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRoutingAbuse: a neighbour that sends adverts with forged signatures, or
// floods valid ones, is refused, counted, and becomes an incident of the
// MAPE-K loop (which quarantines the forger).
func TestRoutingAbuse(t *testing.T) {
	m := newLab(t, nil)
	a, _ := m.Add("alpha", 1)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	trust, _ := identity.NewTrust(m.CA, time.Now())

	t.Run("forged adverts", func(t *testing.T) {
		key, cert, _ := m.Issue("mallory", 30, time.Now(), time.Hour)
		r := newRawPeer(t, a, key, cert, trust)
		kp := r.handshake()
		before := counter(a, "RouteRejected")
		for seq := range uint64(5) {
			forged := advert(t, cert.ID(), seq+1, a.Node.ID(), func([]byte) []byte {
				sig := make([]byte, identity.SignatureSize)
				rand.Read(sig)
				return sig
			})
			r.sendLinkMsg(kp, forged)
		}
		deadline := time.Now().Add(5 * time.Second)
		for counter(a, "RouteRejected") == before {
			if time.Now().After(deadline) {
				t.Fatalf("forged adverts not counted: %v", a.Node.Stats().Snapshot())
			}
			time.Sleep(20 * time.Millisecond)
		}
		inc := waitIncident(t, a, cert.ID(), heal.KindForgery)
		t.Logf("incident %d: %s, actions %d", inc.ID, inc.Kind, len(inc.Actions))
	})

	t.Run("advert flood", func(t *testing.T) {
		key, cert, _ := m.Issue("flooder", 31, time.Now(), time.Hour)
		r := newRawPeer(t, a, key, cert, trust)
		kp := r.handshake()
		// Valid adverts, each newer than the last, far beyond the rate limit.
		sign := func(b []byte) []byte { return key.Signing.Sign(route.SignLabel, b) }
		msg := advert(t, cert.ID(), 1, a.Node.ID(), sign)
		start := time.Now()
		for seq := uint64(1); time.Since(start) < 3*time.Second; seq++ {
			if seq%64 == 0 { // re-sign now and then; in between, replays of one advert
				msg = advert(t, cert.ID(), seq, a.Node.ID(), sign)
			}
			r.sendLinkMsg(kp, msg)
		}
		waitIncident(t, a, cert.ID(), heal.KindFlood)
	})
}
