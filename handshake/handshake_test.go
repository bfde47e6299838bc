package handshake

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/wire"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

type party struct {
	key  *identity.NodeKey
	cert *identity.Certificate
	hs   *Handshaker
}

type mesh struct {
	ca    *identity.Certificate
	caKey *identity.SigningKey
	trust *identity.Trust
	now   time.Time
}

func newMesh(t testing.TB) *mesh {
	t.Helper()
	ca, caKey, err := identity.NewCA("test", "", 365*24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := identity.NewTrust(ca, t0)
	if err != nil {
		t.Fatal(err)
	}
	return &mesh{ca: ca, caKey: caKey, trust: tr, now: t0}
}

func (m *mesh) node(t testing.TB, name string, ip string, validity time.Duration) *party {
	t.Helper()
	key, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.IssueNode(m.ca, m.caKey, identity.NodeTemplate{
		Name: name, Addrs: []netip.Prefix{netip.MustParsePrefix(ip)},
		Validity: validity, Keys: key.PublicKeys(),
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := New(Config{Key: key, Cert: cert, Trust: m.trust, Now: func() time.Time { return m.now }})
	if err != nil {
		t.Fatal(err)
	}
	return &party{key: key, cert: cert, hs: hs}
}

// run performs a full handshake and returns both sides' keys.
func run(t *testing.T, m *mesh, i, r *party) (*Keys, *Keys) {
	t.Helper()
	in, err := i.hs.Initiate(r.cert, 7, wire.SuiteAES256GCM)
	if err != nil {
		t.Fatal(err)
	}
	gen := NewCookieGenerator(r.cert.Keys.DH)
	gen.AddMACs(in.Message, m.now)
	if err := r.hs.Cookies().CheckMAC1(in.Message); err != nil {
		t.Fatal(err)
	}
	inc, err := r.hs.Consume(in.Message)
	if err != nil {
		t.Fatal(err)
	}
	resp, rk, err := inc.Respond(9)
	if err != nil {
		t.Fatal(err)
	}
	NewCookieGenerator(i.cert.Keys.DH).AddMACs(resp, m.now)
	if err := i.hs.Cookies().CheckMAC1(resp); err != nil {
		t.Fatal(err)
	}
	ik, err := in.Finish(resp)
	if err != nil {
		t.Fatal(err)
	}
	return ik, rk
}

func TestHandshakeAgreesOnKeys(t *testing.T) {
	m := newMesh(t)
	a := m.node(t, "a", "100.64.0.1/10", time.Hour)
	b := m.node(t, "b", "100.64.0.2/10", time.Hour)
	ik, rk := run(t, m, a, b)
	if ik.Send != rk.Recv || ik.Recv != rk.Send {
		t.Fatal("initiator and responder derived different transport keys")
	}
	if ik.Send == ik.Recv {
		t.Fatal("both directions share a key")
	}
	if ik.LocalIndex != 7 || ik.RemoteIndex != 9 || rk.LocalIndex != 9 || rk.RemoteIndex != 7 {
		t.Fatalf("indexes: initiator %d/%d responder %d/%d", ik.LocalIndex, ik.RemoteIndex, rk.LocalIndex, rk.RemoteIndex)
	}
	if !rk.Peer.Equal(a.cert) || !ik.Peer.Equal(b.cert) {
		t.Fatal("peer certificates not reported")
	}
	// A second handshake gives fresh keys (ephemeral secrets).
	m.now = m.now.Add(time.Second)
	ik2, _ := run(t, m, a, b)
	if ik2.Send == ik.Send {
		t.Fatal("second handshake reused transport keys")
	}
}

func TestHandshakeFitsMTU1280(t *testing.T) {
	m := newMesh(t)
	a := m.node(t, "a", "100.64.0.1/10", time.Hour)
	b := m.node(t, "b", "100.64.0.2/10", time.Hour)
	in, err := a.hs.Initiate(b.cert, 1, wire.SuiteAES256GCM)
	if err != nil {
		t.Fatal(err)
	}
	frags, err := wire.Fragments(in.Message, 42)
	if err != nil {
		t.Fatal(err)
	}
	r := wire.NewReassembler(wire.DefaultReassemblyLimits)
	src := netip.MustParseAddrPort("[2001:db8::1]:4242")
	var got []byte
	for i := len(frags) - 1; i >= 0; i-- { // arrive in reverse order
		if len(frags[i])+40+8 > 1280 {
			t.Fatalf("fragment %d is %d bytes: exceeds a 1280 MTU", i, len(frags[i]))
		}
		f, err := wire.ParseFragment(frags[i])
		if err != nil {
			t.Fatal(err)
		}
		got = r.Add(src, f, t0)
	}
	if !bytes.Equal(got, in.Message) {
		t.Fatal("reassembled initiation differs")
	}
	t.Logf("initiation %d bytes in %d fragments; response %d bytes", len(in.Message), len(frags), wire.ResponseSize)
}

func TestHandshakeRejections(t *testing.T) {
	m := newMesh(t)
	a := m.node(t, "a", "100.64.0.1/10", time.Hour)
	b := m.node(t, "b", "100.64.0.2/10", time.Hour)

	other := newMesh(t)
	stranger := other.node(t, "a", "100.64.0.1/10", time.Hour)
	// The stranger's certificate comes from another CA but it knows b's public key.
	short := m.node(t, "short", "100.64.0.3/10", time.Minute)

	initiate := func(from *party) []byte {
		in, err := from.hs.Initiate(b.cert, 1, wire.SuiteAES256GCM)
		if err != nil {
			t.Fatal(err)
		}
		return in.Message
	}
	t.Run("certificate from another CA", func(t *testing.T) {
		_, err := b.hs.Consume(initiate(stranger))
		if !errors.Is(err, ErrCertificate) || !errors.Is(err, identity.ErrCertWrongIssuer) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("expired certificate", func(t *testing.T) {
		msg := initiate(short)
		m.now = t0.Add(2 * time.Minute)
		defer func() { m.now = t0 }()
		_, err := b.hs.Consume(msg)
		if !errors.Is(err, ErrCertificate) || !errors.Is(err, identity.ErrCertExpired) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		msg := initiate(a)
		regions := map[string]int{
			"header suite":   8,
			"ephemeral":      12 + 5,
			"kem key":        44 + 100,
			"kem ciphertext": 1228 + 7,
			"certificate":    2316 + 50,
			"timestamp":      len(msg) - 32 - 20,
		}
		for name, off := range regions {
			bad := bytes.Clone(msg)
			bad[off] ^= 0x80
			if _, err := b.hs.Consume(bad); err == nil {
				t.Errorf("%s: tampered initiation accepted", name)
			}
		}
		// Tampering with the suite specifically must be caught by the AEAD, not
		// accepted as a downgrade.
		bad := bytes.Clone(msg)
		bad[8] = wire.SuiteChaCha20Poly1305
		if _, err := b.hs.Consume(bad); !errors.Is(err, ErrDecrypt) {
			t.Errorf("suite downgrade: got %v", err)
		}
	})
	t.Run("replayed initiation", func(t *testing.T) {
		m.now = m.now.Add(time.Second)
		msg := initiate(a)
		if _, err := b.hs.Consume(msg); err != nil {
			t.Fatal(err)
		}
		m.now = m.now.Add(time.Second)
		if _, err := b.hs.Consume(msg); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay: got %v", err)
		}
	})
	t.Run("flood", func(t *testing.T) {
		m.now = m.now.Add(time.Second)
		if _, err := b.hs.Consume(initiate(a)); err != nil {
			t.Fatal(err)
		}
		m.now = m.now.Add(time.Millisecond) // newer timestamp, too soon
		if _, err := b.hs.Consume(initiate(a)); !errors.Is(err, ErrFlood) {
			t.Fatalf("flood: got %v", err)
		}
	})
	t.Run("tampered response", func(t *testing.T) {
		m.now = m.now.Add(time.Second)
		in, err := a.hs.Initiate(b.cert, 1, wire.SuiteAES256GCM)
		if err != nil {
			t.Fatal(err)
		}
		inc, err := b.hs.Consume(in.Message)
		if err != nil {
			t.Fatal(err)
		}
		resp, _, err := inc.Respond(2)
		if err != nil {
			t.Fatal(err)
		}
		for _, off := range []int{13, 44 + 9, 1132 + 9, 2220 + 1} {
			bad := bytes.Clone(resp)
			bad[off] ^= 1
			if _, err := in.Finish(bad); !errors.Is(err, ErrDecrypt) {
				t.Errorf("offset %d: got %v", off, err)
			}
		}
		// The real response still completes after forged ones.
		if _, err := in.Finish(resp); err != nil {
			t.Fatalf("genuine response after forgeries: %v", err)
		}
	})
	t.Run("initiation for someone else", func(t *testing.T) {
		c := m.node(t, "c", "100.64.0.4/10", time.Hour)
		in, err := a.hs.Initiate(c.cert, 1, wire.SuiteAES256GCM)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.hs.Consume(in.Message); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestCookies(t *testing.T) {
	m := newMesh(t)
	a := m.node(t, "a", "100.64.0.1/10", time.Hour)
	b := m.node(t, "b", "100.64.0.2/10", time.Hour)
	src := netip.MustParseAddrPort("192.0.2.1:4242")
	gen := NewCookieGenerator(b.cert.Keys.DH)
	in, err := a.hs.Initiate(b.cert, 1, wire.SuiteAES256GCM)
	if err != nil {
		t.Fatal(err)
	}
	gen.AddMACs(in.Message, t0)
	chk := b.hs.Cookies()
	if err := chk.CheckMAC1(in.Message); err != nil {
		t.Fatal(err)
	}
	// Under load: no cookie yet, so mac2 fails and we answer with a cookie reply.
	if err := chk.CheckMAC2(in.Message, src, t0); !errors.Is(err, ErrCookieRequired) {
		t.Fatalf("mac2 without cookie: %v", err)
	}
	reply, err := chk.MakeReply(in.Message, src, t0)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := wire.ParseCookieReply(reply)
	if err != nil {
		t.Fatal(err)
	}
	if err := gen.ConsumeReply(cr, t0); err != nil {
		t.Fatal(err)
	}
	gen.AddMACs(in.Message, t0)
	if err := chk.CheckMAC2(in.Message, src, t0); err != nil {
		t.Fatalf("mac2 with cookie: %v", err)
	}
	// The cookie is bound to the source address.
	if err := chk.CheckMAC2(in.Message, netip.MustParseAddrPort("192.0.2.9:4242"), t0); err == nil {
		t.Fatal("cookie accepted from another address")
	}
	// mac1 is keyed to the responder: a message to b fails at a.
	if err := a.hs.Cookies().CheckMAC1(in.Message); err == nil {
		t.Fatal("mac1 for b accepted by a")
	}
	// A cookie reply forged without the cookie key does not decrypt.
	bad := bytes.Clone(reply)
	bad[40] ^= 1
	cr, _ = wire.ParseCookieReply(bad)
	if err := gen.ConsumeReply(cr, t0); err == nil {
		t.Fatal("forged cookie reply accepted")
	}
}

func FuzzConsume(f *testing.F) {
	m := newMesh(f)
	a := m.node(f, "a", "100.64.0.1/10", time.Hour)
	b := m.node(f, "b", "100.64.0.2/10", time.Hour)
	in, _ := a.hs.Initiate(b.cert, 1, wire.SuiteAES256GCM)
	f.Add(in.Message)
	f.Add(in.Message[:wire.MinInitiationSize])
	inc, _ := b.hs.Consume(in.Message)
	resp, _, _ := inc.Respond(2)
	f.Add(resp)
	f.Fuzz(func(t *testing.T, msg []byte) {
		_ = b.hs.Cookies().CheckMAC1(msg)
		if inc, err := b.hs.Consume(msg); err == nil {
			if _, _, err := inc.Respond(3); err != nil {
				t.Fatal(err)
			}
		}
		in2, err := a.hs.Initiate(b.cert, 1, wire.SuiteAES256GCM)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := in2.Finish(msg); err == nil {
			t.Fatal("fuzzed response completed a handshake")
		}
	})
}

func BenchmarkHandshake(b *testing.B) {
	m := newMesh(b)
	i := m.node(b, "i", "100.64.0.1/10", 300*24*time.Hour)
	r := m.node(b, "r", "100.64.0.2/10", 300*24*time.Hour)
	// Advance the clock per message so the replay and flood checks never fire.
	step := func() { m.now = m.now.Add(time.Second) }

	b.Run("initiator/create", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := i.hs.Initiate(r.cert, 1, wire.SuiteAES256GCM); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("responder/consume+respond", func(b *testing.B) {
		msgs := make([][]byte, 0, 256)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			if len(msgs) == 0 {
				for range 256 {
					step()
					in, _ := i.hs.Initiate(r.cert, 1, wire.SuiteAES256GCM)
					msgs = append(msgs, in.Message)
				}
			}
			msg := msgs[0]
			msgs = msgs[1:]
			step()
			b.StartTimer()
			inc, err := r.hs.Consume(msg)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := inc.Respond(2); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("initiator/finish", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			step()
			in, _ := i.hs.Initiate(r.cert, 1, wire.SuiteAES256GCM)
			inc, err := r.hs.Consume(in.Message)
			if err != nil {
				b.Fatal(err)
			}
			resp, _, _ := inc.Respond(2)
			b.StartTimer()
			if _, err := in.Finish(resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkResponderThroughput measures complete handshakes served per second
// by a responder on one core: MAC checks, consume, respond. With the cookie on
// (a node under load), every initiation also carries and is checked for mac2.
func BenchmarkResponderThroughput(b *testing.B) {
	for _, cookie := range []bool{false, true} {
		name := "cookie-off"
		if cookie {
			name = "cookie-on"
		}
		b.Run(name, func(b *testing.B) {
			m := newMesh(b)
			i := m.node(b, "i", "100.64.0.1/10", 300*24*time.Hour)
			r := m.node(b, "r", "100.64.0.2/10", 300*24*time.Hour)
			src := netip.MustParseAddrPort("192.0.2.1:4242")
			gen := NewCookieGenerator(r.cert.Keys.DH)
			chk := r.hs.Cookies()
			// Initiations are made ahead in batches, 25 ms of virtual time apart
			// (past the per-peer flood limit); each is consumed at its own time.
			type queued struct {
				msg []byte
				at  time.Time
			}
			var msgs []queued
			refill := func() {
				if cookie { // a fresh cookie per batch, as an initiator under load would get
					in, _ := i.hs.Initiate(r.cert, 1, wire.SuiteAES256GCM)
					gen.AddMACs(in.Message, m.now)
					reply, _ := chk.MakeReply(in.Message, src, m.now)
					cr, _ := wire.ParseCookieReply(reply)
					if err := gen.ConsumeReply(cr, m.now); err != nil {
						b.Fatal(err)
					}
				}
				for range 256 {
					m.now = m.now.Add(25 * time.Millisecond)
					in, _ := i.hs.Initiate(r.cert, 1, wire.SuiteAES256GCM)
					gen.AddMACs(in.Message, m.now)
					msgs = append(msgs, queued{in.Message, m.now})
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if len(msgs) == 0 {
					b.StopTimer()
					refill()
					b.StartTimer()
				}
				q := msgs[0]
				msgs = msgs[1:]
				m.now = q.at
				if err := chk.CheckMAC1(q.msg); err != nil {
					b.Fatal(err)
				}
				if cookie {
					if err := chk.CheckMAC2(q.msg, src, m.now); err != nil {
						// The responder's cookie secret rotated (every 2 min): like a
						// real initiator, get a new cookie and send again.
						b.StopTimer()
						gen.AddMACs(q.msg, m.now) // the message the reply will answer
						reply, _ := chk.MakeReply(q.msg, src, m.now)
						cr, _ := wire.ParseCookieReply(reply)
						if err := gen.ConsumeReply(cr, m.now); err != nil {
							b.Fatal(err)
						}
						gen.AddMACs(q.msg, m.now)
						for _, rest := range msgs {
							gen.AddMACs(rest.msg, m.now)
						}
						b.StartTimer()
						if err := chk.CheckMAC2(q.msg, src, m.now); err != nil {
							b.Fatal(err)
						}
					}
				}
				inc, err := r.hs.Consume(q.msg)
				if err != nil {
					b.Fatal(err)
				}
				resp, _, err := inc.Respond(2)
				if err != nil {
					b.Fatal(err)
				}
				NewCookieGenerator(i.cert.Keys.DH).AddMACs(resp, m.now)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}
