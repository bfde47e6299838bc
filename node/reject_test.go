package node_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/handshake"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/lab"
	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/session"
	"github.com/x0tta6bl4/x0t/wire"
)

// rawPeer speaks the protocol from a plain UDP socket, so a test can send a
// node exactly the bytes it wants: genuine, replayed or broken.
type rawPeer struct {
	t    *testing.T
	conn *net.UDPConn
	to   *lab.Node
	key  *identity.NodeKey
	cert *identity.Certificate
	hs   *handshake.Handshaker
}

func newRawPeer(t *testing.T, to *lab.Node, key *identity.NodeKey, cert *identity.Certificate, trust *identity.Trust) *rawPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hs, err := handshake.New(handshake.Config{Key: key, Cert: cert, Trust: trust})
	if err != nil {
		t.Fatal(err)
	}
	return &rawPeer{t: t, conn: conn, to: to, key: key, cert: cert, hs: hs}
}

func (r *rawPeer) send(b []byte) {
	if _, err := r.conn.WriteToUDPAddrPort(b, r.to.Conn.LocalAddr()); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawPeer) sendMsg(msg []byte) {
	var id [4]byte
	rand.Read(id[:])
	frags, err := wire.Fragments(msg, binary.LittleEndian.Uint32(id[:]))
	if err != nil {
		r.t.Fatal(err)
	}
	for _, f := range frags {
		r.send(f)
	}
}

// initiation returns a MAC'd initiation to the target node.
func (r *rawPeer) initiation(sender uint32) *handshake.Initiator {
	in, err := r.hs.Initiate(r.to.Cert, sender, wire.SuiteAES256GCM)
	if err != nil {
		r.t.Fatal(err)
	}
	handshake.NewCookieGenerator(r.to.Cert.Keys.DH).AddMACs(in.Message, time.Now())
	return in
}

// recvResponse reassembles the node's response, or returns nil on timeout.
func (r *rawPeer) recvResponse(timeout time.Duration) []byte {
	ra := wire.NewReassembler(wire.DefaultReassemblyLimits)
	buf := make([]byte, 2048)
	r.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil
		}
		f, err := wire.ParseFragment(buf[:n])
		if err != nil {
			continue
		}
		if msg := ra.Add(from, f, time.Now()); msg != nil && wire.PacketType(msg) == wire.TypeResponse {
			return msg
		}
	}
}

// handshake completes a handshake and returns the transport keypair.
func (r *rawPeer) handshake() *session.Keypair {
	in := r.initiation(1234)
	r.sendMsg(in.Message)
	resp := r.recvResponse(5 * time.Second)
	if resp == nil {
		r.t.Fatal("no response to a genuine initiation")
	}
	keys, err := in.Finish(resp)
	if err != nil {
		r.t.Fatal(err)
	}
	kp, err := session.NewKeypair(keys.Send, keys.Recv, keys.Suite, keys.LocalIndex, keys.RemoteIndex, true, time.Now())
	if err != nil {
		r.t.Fatal(err)
	}
	return kp
}

// dataPacket seals an IPv4 UDP packet from the raw peer's overlay address.
func (r *rawPeer) dataPacket(kp *session.Keypair, marker string) []byte {
	src, _ := r.cert.Addr(false)
	ip := overlay.PacketUDP(netip.AddrPortFrom(src.Addr(), 9999), netip.AddrPortFrom(r.to.Addr(false), 9), []byte(marker))
	buf := make([]byte, wire.DataHeaderSize+len(ip), wire.DataOverhead+len(ip))
	copy(buf[wire.DataHeaderSize:], ip)
	n, err := kp.Seal(buf, len(ip), time.Now())
	if err != nil {
		r.t.Fatal(err)
	}
	return buf[:n]
}

// waitCounter waits until the named counter of n reaches want.
func waitCounter(t *testing.T, n *lab.Node, name string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := n.Node.Stats().Snapshot()[name]
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d; all counters: %v", name, got, want, n.Node.Stats().Snapshot())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRejections sends a running node every kind of bad input the tunnel must
// refuse. Each is dropped and counted under its own reason, and the node keeps
// carrying traffic for its genuine peers.
func TestRejections(t *testing.T) {
	m := newLab(t, nil)
	nodes := addNodes(t, m, []string{"alpha", "beta"})
	startAll(t, nodes)
	a, b := nodes[0], nodes[1]
	trust, _ := identity.NewTrust(m.CA, time.Now())
	_, stop, err := a.ServeHTTP(256 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	get(t, b, a, false)

	counter := func(name string) uint64 { return a.Node.Stats().Snapshot()[name] }

	t.Run("tampered handshake message", func(t *testing.T) {
		key, cert, _ := m.Issue("mallory", 20, time.Now(), time.Hour)
		r := newRawPeer(t, a, key, cert, trust)
		in := r.initiation(1)
		in.Message[3000] ^= 0x01 // inside the encrypted certificate
		handshake.NewCookieGenerator(a.Cert.Keys.DH).AddMACs(in.Message, time.Now())
		before := counter("HSDecrypt")
		r.sendMsg(in.Message)
		waitCounter(t, a, "HSDecrypt", before+1)
		if r.recvResponse(200*time.Millisecond) != nil {
			t.Fatal("tampered initiation answered")
		}
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		other, _ := lab.New("test", nil)
		key, cert, _ := other.Issue("mallory", 21, time.Now(), time.Hour)
		otherTrust, _ := identity.NewTrust(other.CA, time.Now())
		r := newRawPeer(t, a, key, cert, otherTrust)
		before := counter("HSCertWrongCA")
		r.sendMsg(r.initiation(1).Message)
		waitCounter(t, a, "HSCertWrongCA", before+1)
	})
	t.Run("expired certificate", func(t *testing.T) {
		key, cert, _ := m.Issue("old", 22, time.Now().Add(-2*time.Hour), time.Hour)
		r := newRawPeer(t, a, key, cert, trust)
		before := counter("HSCertExpired")
		r.sendMsg(r.initiation(1).Message)
		waitCounter(t, a, "HSCertExpired", before+1)
	})
	for _, half := range []struct {
		name string
		off  func(n int) int
	}{
		{"Ed25519", func(n int) int { return n - identity.SignatureSize + 10 }},
		{"ML-DSA-65", func(n int) int { return n - 10 }},
	} {
		t.Run("certificate with its "+half.name+" signature broken", func(t *testing.T) {
			key, cert, _ := m.Issue("forged", 23, time.Now(), time.Hour)
			raw := bytes.Clone(cert.Bytes())
			raw[half.off(len(raw))] ^= 0x01
			broken, err := identity.ParseCertificate(raw)
			if err != nil {
				t.Fatal(err)
			}
			r := newRawPeer(t, a, key, broken, trust)
			before := counter("HSCertSignature")
			r.sendMsg(r.initiation(1).Message)
			waitCounter(t, a, "HSCertSignature", before+1)
		})
	}
	t.Run("replayed data packet, replayed initiation, unknown session", func(t *testing.T) {
		key, cert, _ := m.Issue("carol", 24, time.Now(), time.Hour)
		r := newRawPeer(t, a, key, cert, trust)
		kp := r.handshake()

		before := counter("RxPackets")
		pkt := r.dataPacket(kp, "first")
		r.send(pkt)
		waitCounter(t, a, "RxPackets", before+1)

		replays := counter("DropReplay")
		r.send(pkt)
		waitCounter(t, a, "DropReplay", replays+1)

		unknown := counter("DropUnknownSession")
		bogus := r.dataPacket(kp, "second")
		binary.LittleEndian.PutUint32(bogus[4:8], 0xdeadbeef)
		r.send(bogus)
		waitCounter(t, a, "DropUnknownSession", unknown+1)

		auth := counter("DropAuth")
		forged := r.dataPacket(kp, "third")
		forged[len(forged)-1] ^= 0x01
		r.send(forged)
		waitCounter(t, a, "DropAuth", auth+1)

		// The same initiation again (newer ones pass; this one is old).
		time.Sleep(handshake.MinInitiationInterval) // not a flood
		in := r.initiation(77)
		r.sendMsg(in.Message)
		if r.recvResponse(5*time.Second) == nil {
			t.Fatalf("no response to a fresh initiation: %v", a.Node.Stats().Snapshot())
		}
		time.Sleep(handshake.MinInitiationInterval)
		replayed := counter("HSReplay")
		r.sendMsg(in.Message)
		waitCounter(t, a, "HSReplay", replayed+1)
	})
	t.Run("garbage", func(t *testing.T) {
		key, cert, _ := m.Issue("noise", 25, time.Now(), time.Hour)
		r := newRawPeer(t, a, key, cert, trust)
		before := counter("DropMalformed") + counter("DropFragment") + counter("HSBadMAC")
		junk := make([]byte, 600)
		for i := range 50 {
			rand.Read(junk)
			junk[0] = byte(i % 7)
			r.send(junk[:1+i*11])
		}
		deadline := time.Now().Add(5 * time.Second)
		for counter("DropMalformed")+counter("DropFragment")+counter("HSBadMAC")+counter("DropUnknownSession") < before+30 {
			if time.Now().After(deadline) {
				t.Fatalf("garbage not counted: %v", a.Node.Stats().Snapshot())
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	// None of it stalled the node: genuine traffic still flows both ways.
	get(t, b, a, false)
	get(t, b, a, true)
}
