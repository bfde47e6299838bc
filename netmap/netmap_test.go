package netmap

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/policy"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func caKey(t testing.TB) *identity.SigningKey {
	t.Helper()
	k, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func peer(id string) Peer {
	return Peer{ID: id, Name: "n-" + id, Cert: []byte("cert-" + id), Endpoints: []string{"192.0.2.1:4242"}}
}

func rules(port uint16) policy.Rules {
	return policy.Rules{Allow: []policy.Rule{{Srcs: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10")},
		Proto: policy.ProtoTCP, Ports: []policy.PortRange{{First: port, Last: port}}}}}
}

func TestSignOpenApplyDiff(t *testing.T) {
	k := caKey(t)
	r := rules(22)
	full := &Delta{Mesh: "m", Node: "self", To: 5, Issued: t0, Upsert: []Peer{peer("a"), peer("b")}, Rules: &r}
	s, err := Sign(full, k)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Open(s, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	m, err := Apply(nil, d)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 5 || len(m.Peers) != 2 || !m.Rules.Equal(r) {
		t.Fatalf("snapshot: %+v", m)
	}

	// A later view: a removed, b changed, c added, rules changed, a revoked.
	next := &Netmap{Mesh: "m", Node: "self", Version: 9, Rules: rules(80), Revoked: []string{"a"}}
	b := peer("b")
	b.Endpoints = []string{"192.0.2.9:4242"}
	next.Peers = []Peer{b, peer("c")}
	delta := Diff(m, next)
	if delta.From != 5 || delta.To != 9 || len(delta.Upsert) != 2 || !cmp.Equal(delta.Remove, []string{"a"}) || delta.Rules == nil {
		t.Fatalf("diff: %+v", delta)
	}
	s2, err := Sign(delta, k)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := Open(s2, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	got, err := Apply(m, d2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(next, got, cmp.Comparer(func(a, b policy.Rules) bool { return a.Equal(b) })); diff != "" {
		t.Fatalf("apply(diff) differs from the target view:\n%s", diff)
	}
	if m.Version != 5 || len(m.Peers) != 2 {
		t.Fatal("Apply modified its input")
	}
	// An unchanged view diffs to an empty delta.
	same := Diff(got, &Netmap{Mesh: "m", Node: "self", Version: 10, Peers: got.Peers, Rules: got.Rules, Revoked: got.Revoked})
	if len(same.Upsert)+len(same.Remove)+len(same.Revoked) != 0 || same.Rules != nil {
		t.Fatalf("no-op diff carries changes: %+v", same)
	}
}

func TestRejections(t *testing.T) {
	k := caKey(t)
	other := caKey(t)
	r := rules(22)
	good := &Delta{Mesh: "m", Node: "self", To: 1, Upsert: []Peer{peer("a")}, Rules: &r}
	s, _ := Sign(good, k)

	if _, err := Open(s, other.Public()); !errors.Is(err, ErrSignature) {
		t.Fatalf("other CA: %v", err)
	}
	tampered := &Signed{Payload: bytes.Replace(s.Payload, []byte(`"n-a"`), []byte(`"n-x"`), 1), Signature: s.Signature}
	if _, err := Open(tampered, k.Public()); !errors.Is(err, ErrSignature) {
		t.Fatalf("tampered payload: %v", err)
	}
	if _, err := Open(&Signed{Payload: s.Payload}, k.Public()); !errors.Is(err, ErrSignature) {
		t.Fatalf("unsigned: %v", err)
	}
	// Signed but malformed: validation runs after the signature.
	bad := func(d *Delta) *Signed {
		p, _ := json.Marshal(d)
		return &Signed{Payload: p, Signature: k.Sign(Label, p)}
	}
	for name, d := range map[string]*Delta{
		"snapshot without rules": {Mesh: "m", Node: "self", To: 1},
		"version goes back":      {Mesh: "m", Node: "self", From: 5, To: 5},
		"peer without cert":      {Mesh: "m", Node: "self", From: 1, To: 2, Upsert: []Peer{{ID: "a"}}},
		"duplicate peer":         {Mesh: "m", Node: "self", From: 1, To: 2, Upsert: []Peer{peer("a"), peer("a")}},
	} {
		if _, err := Open(bad(d), k.Public()); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	unknown := []byte(`{"mesh":"m","node":"self","from":0,"to":1,"rules":{"allow":[]},"surprise":1}`)
	if _, err := Open(&Signed{Payload: unknown, Signature: k.Sign(Label, unknown)}, k.Public()); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unknown field: %v", err)
	}

	m, _ := Apply(nil, good)
	if _, err := Apply(m, &Delta{Mesh: "m", Node: "self", From: 7, To: 8}); !errors.Is(err, ErrVersion) {
		t.Fatalf("gap: %v", err)
	}
	if _, err := Apply(m, &Delta{Mesh: "other", Node: "self", From: 1, To: 2}); !errors.Is(err, ErrForeign) {
		t.Fatalf("foreign: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	k := caKey(f)
	r := rules(22)
	s, _ := Sign(&Delta{Mesh: "m", Node: "self", To: 1, Upsert: []Peer{peer("a")}, Rules: &r}, k)
	f.Add(s.Payload, s.Signature)
	f.Add([]byte(`{}`), []byte{})
	f.Fuzz(func(t *testing.T, payload, sig []byte) {
		// Only the CA's signature opens a delta; nothing unsigned decodes.
		d, err := Open(&Signed{Payload: payload, Signature: sig}, k.Public())
		if err == nil && !bytes.Equal(payload, s.Payload) {
			t.Fatalf("forged delta accepted: %+v", d)
		}
	})
}

// FuzzDecodeDelta fuzzes the decoder behind the signature check, as a
// compromised or buggy control plane could feed it anything validly signed.
func FuzzDecodeDelta(f *testing.F) {
	k := caKey(f)
	r := rules(22)
	s, _ := Sign(&Delta{Mesh: "m", Node: "self", To: 1, Upsert: []Peer{peer("a")}, Rules: &r}, k)
	f.Add(s.Payload)
	f.Add([]byte(`{"mesh":"m","node":"n","from":3,"to":4,"remove":["x"]}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		d, err := Open(&Signed{Payload: payload, Signature: k.Sign(Label, payload)}, k.Public())
		if err != nil {
			return
		}
		m, err := Apply(nil, &Delta{Mesh: d.Mesh, Node: d.Node, To: 1, Rules: &policy.Rules{}})
		if err != nil {
			t.Fatal(err)
		}
		if d.From == 1 {
			if _, err := Apply(m, d); err != nil && !errors.Is(err, ErrForeign) {
				t.Fatalf("valid delta failed to apply: %v", err)
			}
		}
	})
}
