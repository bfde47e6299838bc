package control_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
	"github.com/x0tta6bl4/x0t/identity"
)

func TestEnrollAutoApprove(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	mesh := must[*apitypes.Mesh](t)(ts.admin.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: "prod"}))
	if mesh.IPv4Prefix != "100.64.0.0/10" || !strings.HasPrefix(mesh.IPv6Prefix, "fd") || mesh.PQProfile != apitypes.PQHybrid768 ||
		len(mesh.Transports) != 1 || mesh.CertValidity != "720h0m0s" {
		t.Fatalf("mesh defaults: %+v", mesh)
	}
	tok := must[*apitypes.CreatedToken](t)(ts.admin.CreateToken(ctx, "prod", apitypes.CreateTokenRequest{
		AutoApprove: true, Tags: []string{"tag:web", "db"}, MaxUses: ptr(2)}))
	if !strings.HasPrefix(tok.Secret, "x0t_join_") || tok.Tags[0] != "db" || tok.Tags[1] != "web" {
		t.Fatalf("token: %+v", tok)
	}
	n := ts.newNode()
	resp := n.enroll(t, tok.Secret, "Web Server 1")
	if resp.Status != api.StatusApproved || resp.NodeID != n.id || resp.Mesh != "prod" || len(resp.Cert) == 0 {
		t.Fatalf("enroll: %+v", resp)
	}
	ca := must[*identity.Certificate](t)(identity.ParseCertificate(resp.CACert))
	cert := must[*identity.Certificate](t)(identity.ParseCertificate(resp.Cert))
	if err := cert.Verify(ca, time.Now()); err != nil {
		t.Fatal(err)
	}
	v4, _ := cert.Addr(false)
	v6, _ := cert.Addr(true)
	if cert.Name != "web-server-1" || v4.String() != "100.64.0.1/10" || !v6.IsValid() || !cert.HasTag("web") || !cert.HasTag("db") {
		t.Fatalf("certificate: name %q addrs %v tags %v", cert.Name, cert.Addrs, cert.Tags)
	}
	if cert.ID().String() != n.id {
		t.Fatal("certificate for other keys")
	}

	// A retry with the same keys returns the same node and uses no token.
	again := n.enroll(t, tok.Secret, "Web Server 1")
	if again.NodeID != n.id || again.Status != api.StatusApproved {
		t.Fatalf("re-enroll: %+v", again)
	}
	// Second node: next address, same name gets a suffix; the token is used up.
	n2 := ts.newNode()
	r2 := n2.enroll(t, tok.Secret, "web-server-1")
	c2 := must[*identity.Certificate](t)(identity.ParseCertificate(r2.Cert))
	if a, _ := c2.Addr(false); a.Addr().String() != "100.64.0.2" || c2.Name != "web-server-1-2" {
		t.Fatalf("second node: %v %s", c2.Addrs, c2.Name)
	}
	n3 := ts.newNode()
	_, err := n3.c.Enroll(ctx, controlclient.NewEnrollRequest(tok.Secret, "third", n3.key, nil))
	if controlclient.StatusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "used up") {
		t.Fatalf("third use of a two-use token: %v", err)
	}
	got := must[*apitypes.Token](t)(ts.admin.GetToken(ctx, "prod", tok.ID))
	if got.Uses != 2 || got.Valid {
		t.Fatalf("token after two uses: %+v", got)
	}

	// Status and renewal, signed by the node.
	st := must[*api.NodeResponse](t)(n.c.Status(ctx))
	if st.Status != api.StatusApproved || len(st.Cert) == 0 {
		t.Fatalf("status: %+v", st)
	}
	rn := must[*api.NodeResponse](t)(n.c.Renew(ctx))
	if string(rn.Cert) == string(resp.Cert) {
		t.Fatal("renewal returned the same certificate")
	}
	if c := must[*identity.Certificate](t)(identity.ParseCertificate(rn.Cert)); c.Verify(ca, time.Now()) != nil || c.Name != cert.Name {
		t.Fatal("renewed certificate does not verify")
	}
}

func TestEnrollPendingApprove(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	must[*apitypes.Mesh](t)(ts.admin.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: "lab", IPv4Prefix: "10.10.0.0/24"}))
	tok := must[*apitypes.CreatedToken](t)(ts.admin.CreateToken(ctx, "lab", apitypes.CreateTokenRequest{}))
	n := ts.newNode()
	resp := n.enroll(t, tok.Secret, "laptop")
	if resp.Status != api.StatusPending || len(resp.Cert) != 0 || len(resp.CACert) == 0 {
		t.Fatalf("enroll: %+v", resp)
	}
	// Pending: status polls work, renewal does not.
	if st := must[*api.NodeResponse](t)(n.c.Status(ctx)); st.Status != api.StatusPending {
		t.Fatalf("status: %+v", st)
	}
	if _, err := n.c.Renew(ctx); controlclient.StatusOf(err) != http.StatusConflict {
		t.Fatalf("renew while pending: %v", err)
	}
	list := must[[]apitypes.Node](t)(ts.admin.ListNodes(ctx, "lab", "pending"))
	if len(list) != 1 || list[0].Name != "laptop" || list[0].IPv4 != "10.10.0.1" || list[0].Status != "pending" {
		t.Fatalf("pending nodes: %+v", list)
	}
	node := must[*apitypes.Node](t)(ts.admin.ApproveNode(ctx, "lab", "laptop"))
	if node.Status != api.StatusApproved || node.CertNotAfter == nil {
		t.Fatalf("approve: %+v", node)
	}
	st := must[*api.NodeResponse](t)(n.c.Status(ctx))
	if st.Status != api.StatusApproved || len(st.Cert) == 0 {
		t.Fatalf("status after approval: %+v", st)
	}
	// Rename and tag: the certificate is reissued.
	node = must[*apitypes.Node](t)(ts.admin.UpdateNode(ctx, "lab", "laptop", apitypes.UpdateNodeRequest{Name: ptr("desk"), Tags: &[]string{"dev"}}))
	st = must[*api.NodeResponse](t)(n.c.Status(ctx))
	c := must[*identity.Certificate](t)(identity.ParseCertificate(st.Cert))
	if node.Name != "desk" || c.Name != "desk" || !c.HasTag("dev") {
		t.Fatalf("after rename and tag: %+v, cert %s %v", node, c.Name, c.Tags)
	}
	// By ID too.
	if got := must[*apitypes.Node](t)(ts.admin.GetNode(ctx, "lab", n.id)); got.Name != "desk" {
		t.Fatal("node by id")
	}

	// Revoked: refused everywhere, with 403.
	must[*apitypes.Node](t)(ts.admin.RevokeNode(ctx, "lab", "desk"))
	if _, err := n.c.Status(ctx); !errors.Is(err, controlclient.ErrRevoked) {
		t.Fatalf("status of a revoked node: %v", err)
	}
	if err := n.c.Heartbeat(ctx, &api.Heartbeat{}); !errors.Is(err, controlclient.ErrRevoked) {
		t.Fatalf("heartbeat of a revoked node: %v", err)
	}
	if _, err := n.c.Renew(ctx); !errors.Is(err, controlclient.ErrRevoked) {
		t.Fatalf("renew of a revoked node: %v", err)
	}
	if err := n.c.StreamNetmap(ctx, 0, nil); !errors.Is(err, controlclient.ErrRevoked) {
		t.Fatalf("netmap of a revoked node: %v", err)
	}
	if _, err := ts.admin.ApproveNode(ctx, "lab", "desk"); controlclient.StatusOf(err) != http.StatusConflict {
		t.Fatalf("approve a revoked node: %v", err)
	}
	// Re-enrolling the same keys with a new token is refused.
	tok2 := must[*apitypes.CreatedToken](t)(ts.admin.CreateToken(ctx, "lab", apitypes.CreateTokenRequest{}))
	if _, err := n.c.Enroll(ctx, controlclient.NewEnrollRequest(tok2.Secret, "desk", n.key, nil)); !errors.Is(err, controlclient.ErrRevoked) {
		t.Fatalf("re-enroll a revoked node: %v", err)
	}
	// Deleted: unknown from now on (401), and its keys stay refused while its certificate lives.
	if err := ts.admin.DeleteNode(ctx, "lab", "desk"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.c.Status(ctx); controlclient.StatusOf(err) != http.StatusUnauthorized {
		t.Fatalf("status of a deleted node: %v", err)
	}
	if _, err := n.c.Enroll(ctx, controlclient.NewEnrollRequest(tok2.Secret, "desk", n.key, nil)); !errors.Is(err, controlclient.ErrRevoked) {
		t.Fatalf("re-enroll a deleted, certified node: %v", err)
	}
}

func TestTokenLimits(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	ts := startServer(t, nil)
	_ = clock
	ctx := context.Background()
	must[*apitypes.Mesh](t)(ts.admin.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: "m"}))

	// TTL.
	short := must[*apitypes.CreatedToken](t)(ts.admin.CreateToken(ctx, "m", apitypes.CreateTokenRequest{TTL: "1s"}))
	time.Sleep(1100 * time.Millisecond)
	n := ts.newNode()
	_, err := n.c.Enroll(ctx, controlclient.NewEnrollRequest(short.Secret, "x", n.key, nil))
	if controlclient.StatusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
	// Revocation.
	tok := must[*apitypes.CreatedToken](t)(ts.admin.CreateToken(ctx, "m", apitypes.CreateTokenRequest{MaxUses: ptr(0)}))
	n.enroll(t, tok.Secret, "a")
	rev := must[*apitypes.Token](t)(ts.admin.RevokeToken(ctx, "m", tok.ID))
	if rev.RevokedAt == nil || rev.Valid {
		t.Fatalf("revoked token: %+v", rev)
	}
	n2 := ts.newNode()
	_, err = n2.c.Enroll(ctx, controlclient.NewEnrollRequest(tok.Secret, "b", n2.key, nil))
	if controlclient.StatusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked token: %v", err)
	}
	// Unknown token; a proof by another key.
	_, err = n2.c.Enroll(ctx, controlclient.NewEnrollRequest("x0t_join_nope", "b", n2.key, nil))
	if controlclient.StatusOf(err) != http.StatusUnauthorized {
		t.Fatalf("unknown token: %v", err)
	}
	n3 := ts.newNode()
	req := controlclient.NewEnrollRequest(tok.Secret, "c", n3.key, nil)
	req.Proof = n2.key.Signing.Sign(api.LabelEnroll, api.EnrollProof(tok.Secret, "c", req.Keys))
	if _, err := n3.c.Enroll(ctx, req); controlclient.StatusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "proof") {
		t.Fatalf("proof by another key: %v", err)
	}
	// Listing never shows a secret.
	toks := must[[]apitypes.Token](t)(ts.admin.ListTokens(ctx, "m"))
	if len(toks) != 2 {
		t.Fatalf("tokens: %+v", toks)
	}
	for _, tk := range toks {
		if strings.Contains(tk.Prefix, tok.Secret) || len(tk.Prefix) > 20 {
			t.Fatal("secret in a token listing")
		}
	}
}
