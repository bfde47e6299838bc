package agent

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/netmap"
	"github.com/x0tta6bl4/x0t/policy"
)

// fakeCP answers as a control plane that approved the node at once.
type fakeCP struct {
	ca       *identity.Certificate
	caKey    *identity.SigningKey
	issued   *identity.Certificate
	validity time.Duration // of issued certificates (default 1 h)
	renewals atomic.Int64
}

func (f *fakeCP) issue(name string, keys identity.PublicKeys) (*identity.Certificate, error) {
	v := f.validity
	if v == 0 {
		v = time.Hour
	}
	return identity.IssueNode(f.ca, f.caKey, identity.NodeTemplate{Name: name,
		Addrs: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/10")}, Validity: v, Keys: keys}, time.Now())
}

func (f *fakeCP) Enroll(ctx context.Context, req *api.EnrollRequest) (*api.NodeResponse, error) {
	vk, err := identity.ParseVerifyingKey(req.Keys.Signing)
	if err != nil {
		return nil, err
	}
	if err := vk.Verify(api.LabelEnroll, api.EnrollProof(req.Token, req.Name, req.Keys), req.Proof); err != nil {
		return nil, err
	}
	cert, err := f.issue(req.Name, req.Keys.Identity())
	if err != nil {
		return nil, err
	}
	f.issued = cert
	return &api.NodeResponse{NodeID: cert.ID().String(), Status: api.StatusApproved, Mesh: f.ca.Mesh, CACert: f.ca.Bytes(), Cert: cert.Bytes()}, nil
}
func (f *fakeCP) Status(ctx context.Context) (*api.NodeResponse, error) {
	return &api.NodeResponse{NodeID: f.issued.ID().String(), Status: api.StatusApproved, CACert: f.ca.Bytes(), Cert: f.issued.Bytes()}, nil
}
func (f *fakeCP) StreamNetmap(ctx context.Context, since uint64, fn func(*netmap.Signed) error) error {
	<-ctx.Done()
	return ctx.Err()
}
func (f *fakeCP) Heartbeat(ctx context.Context, hb *api.Heartbeat) error { return nil }
func (f *fakeCP) Renew(ctx context.Context) (*api.NodeResponse, error) {
	cert, err := f.issue(f.issued.Name, f.issued.Keys)
	if err != nil {
		return nil, err
	}
	f.issued = cert
	f.renewals.Add(1)
	return f.Status(ctx)
}

func setup(t *testing.T) (*fakeCP, *Agent) {
	return setupWith(t, 0)
}

func setupWith(t *testing.T, validity time.Duration) (*fakeCP, *Agent) {
	t.Helper()
	ca, caKey, err := identity.NewCA("mesh", "", time.Hour*24, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cp := &fakeCP{ca: ca, caKey: caKey, validity: validity}
	st, err := NewState(t.TempDir(), "https://cp.example", "", "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if err := Enroll(context.Background(), cp, st, Options{Token: "tok"}); err != nil {
		t.Fatal(err)
	}
	// A restart reads everything back without the token.
	st2, err := LoadState(st.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if st2.Cert == nil || st2.CA == nil || st2.NodeID != st.NodeID {
		t.Fatalf("state not kept: %+v", st2)
	}
	if err := Enroll(context.Background(), cp, st2, Options{}); err != nil {
		t.Fatalf("re-enroll without token: %v", err)
	}
	a, err := New(st2, cp, Options{Netstack: true, Listen: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	return cp, a
}

func (f *fakeCP) peer(t *testing.T, name string, host byte) netmap.Peer {
	k, _ := identity.GenerateNodeKey()
	c, err := identity.IssueNode(f.ca, f.caKey, identity.NodeTemplate{Name: name,
		Addrs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, host}), 10)}, Validity: time.Hour, Keys: k.PublicKeys()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return netmap.Peer{ID: c.ID().String(), Name: name, Cert: c.Bytes(), Endpoints: []string{"127.0.0.1:9"}}
}

func peerNames(a *Agent) map[string]bool {
	out := map[string]bool{}
	for _, p := range a.node.Peers() {
		out[p.Name] = true
	}
	return out
}

// TestNetmapRejections: a node applies only netmaps signed by its mesh CA, for
// itself, in order; anything else is refused and changes nothing.
func TestNetmapRejections(t *testing.T) {
	cp, a := setup(t)
	r := policy.AllowAll()
	beta, gamma := cp.peer(t, "beta", 2), cp.peer(t, "gamma", 3)
	snap := &netmap.Delta{Mesh: "mesh", Node: a.st.NodeID, To: 10, Upsert: []netmap.Peer{beta}, Rules: &r}
	s, err := netmap.Sign(snap, cp.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.applySigned(s); err != nil {
		t.Fatal(err)
	}
	if !peerNames(a)["beta"] || a.Netmap().Version != 10 {
		t.Fatalf("snapshot not installed: %v", peerNames(a))
	}

	add := &netmap.Delta{Mesh: "mesh", Node: a.st.NodeID, From: 10, To: 11, Upsert: []netmap.Peer{gamma}}
	good, _ := netmap.Sign(add, cp.caKey)
	otherCA, _ := identity.GenerateSigningKey()
	forged, _ := netmap.Sign(add, otherCA)
	unsigned := &netmap.Signed{Payload: good.Payload}
	garbage := []byte(`{"mesh":"mesh","node":"` + a.st.NodeID + `","from":10,"to":11,"upsert":[{"id":1}]}`)
	malformed := &netmap.Signed{Payload: garbage, Signature: cp.caKey.Sign(netmap.Label, garbage)}
	foreign, _ := netmap.Sign(&netmap.Delta{Mesh: "mesh", Node: "00000000000000000000000000000000", From: 10, To: 11, Upsert: []netmap.Peer{gamma}}, cp.caKey)
	for name, bad := range map[string]*netmap.Signed{"forged": forged, "unsigned": unsigned, "malformed": malformed, "for another node": foreign} {
		if err := a.applySigned(bad); err != nil {
			t.Fatalf("%s: the stream should carry on, got %v", name, err)
		}
		if peerNames(a)["gamma"] || a.Netmap().Version != 10 {
			t.Fatalf("%s netmap changed the node", name)
		}
	}
	gap, _ := netmap.Sign(&netmap.Delta{Mesh: "mesh", Node: a.st.NodeID, From: 12, To: 13, Upsert: []netmap.Peer{gamma}}, cp.caKey)
	if err := a.applySigned(gap); !errors.Is(err, netmap.ErrVersion) {
		t.Fatalf("out-of-order delta: %v", err)
	}
	if err := a.applySigned(good); err != nil || !peerNames(a)["gamma"] {
		t.Fatalf("genuine delta after refusals: %v", err)
	}

	// A revocation removes the peer; revoking ourselves stops the agent.
	rev, _ := netmap.Sign(&netmap.Delta{Mesh: "mesh", Node: a.st.NodeID, From: 11, To: 12, Remove: []string{gamma.ID}, Revoked: []string{gamma.ID}}, cp.caKey)
	if err := a.applySigned(rev); err != nil || peerNames(a)["gamma"] {
		t.Fatalf("revocation: %v %v", err, peerNames(a))
	}
	self, _ := netmap.Sign(&netmap.Delta{Mesh: "mesh", Node: a.st.NodeID, From: 12, To: 13, Revoked: []string{a.st.NodeID}}, cp.caKey)
	if err := a.applySigned(self); !errors.Is(err, ErrRevoked) {
		t.Fatalf("self-revocation: %v", err)
	}
	if a.Netmap().Version != 12 {
		t.Fatal("a netmap revoking this node was installed")
	}
}

// TestRenewsBeforeExpiry: a certificate valid for a minute and 3 s (IssueNode
// backdates by a minute) is past two thirds of its life at once: the agent asks
// for a new one, keeps it in its state directory and gives it to the node.
func TestRenewsBeforeExpiry(t *testing.T) {
	cp, a := setupWith(t, 3*time.Second)
	first := a.st.Cert
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.identityLoop(ctx) }()
	var saved *State
	for {
		var err error
		if saved, err = LoadState(a.st.Dir()); err == nil && !saved.Cert.Equal(first) {
			break
		}

		select {
		case <-ctx.Done():
			t.Fatalf("no renewal: %d renewals", cp.renewals.Load())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	<-done
	if saved.Cert.NotAfter.Before(first.NotAfter) || saved.Cert.ID() != first.ID() {
		t.Fatal("renewed certificate expires sooner, or is for other keys")
	}
}
