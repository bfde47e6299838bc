package control_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
)

// tenant is an organization with one of everything.
type tenant struct {
	c       *controlclient.Client
	key     string
	org     *apitypes.CreateOrgResponse
	mesh    string
	nodes   []*testNode // approved, pending
	names   []string
	token   *apitypes.CreatedToken
	user    *apitypes.User
	userKey *apitypes.CreatedKey
}

func populate(t *testing.T, ts *testServer, org, prefix string) *tenant {
	ctx := context.Background()
	c, res := ts.newOrg(org)
	tn := &tenant{c: c, key: res.Key.Key, org: res, mesh: prefix + "-mesh"}
	must[*apitypes.Mesh](t)(c.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: tn.mesh}))
	auto := must[*apitypes.CreatedToken](t)(c.CreateToken(ctx, tn.mesh, apitypes.CreateTokenRequest{AutoApprove: true, Tags: []string{prefix + "-tag"}}))
	tn.token = must[*apitypes.CreatedToken](t)(c.CreateToken(ctx, tn.mesh, apitypes.CreateTokenRequest{Description: prefix + "-token"}))
	for i, tok := range []string{auto.Secret, tn.token.Secret} {
		n := ts.newNode()
		name := prefix + "-node" + string(rune('1'+i))
		n.enroll(t, tok, name)
		tn.nodes = append(tn.nodes, n)
		tn.names = append(tn.names, name)
	}
	pol := `{"acls":[{"action":"accept","src":["tag:` + prefix + `-tag"],"dst":["*:22"],"proto":"tcp"}],
		"tests":[{"src":"node:` + prefix + `-node1","dst":"node:` + prefix + `-node1","proto":"tcp","port":22,"want":"accept"}]}`
	if _, _, err := c.SetACL(ctx, tn.mesh, []byte(pol), ""); err != nil {
		t.Fatal(err)
	}
	tn.user = must[*apitypes.User](t)(c.CreateUser(ctx, apitypes.CreateUserRequest{Name: prefix + "-user", Role: "admin"}))
	tn.userKey = must[*apitypes.CreatedKey](t)(c.CreateKey(ctx, apitypes.CreateKeyRequest{Name: prefix + "-key", Role: "admin", UserID: tn.user.ID}))
	if _, err := c.CreateCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	return tn
}

// secrets lists what must never appear in another tenant's answers.
func (tn *tenant) secrets() []string {
	s := []string{tn.org.Org.ID, tn.org.Org.Name, tn.org.User.ID, tn.org.Key.ID, tn.key, tn.mesh, tn.token.ID, tn.token.Secret,
		tn.token.Prefix, tn.user.ID, tn.userKey.ID, tn.userKey.Key, tn.userKey.Prefix}
	for _, n := range tn.nodes {
		s = append(s, n.id)
	}
	return append(s, tn.names...)
}

// TestTenantIsolation walks every API-key operation of the OpenAPI document
// with organization A's owner key against organization B's objects: every
// one is refused exactly as a missing object is (same status, same body),
// no answer mentions anything of B, and B's state and audit log do not move.
func TestTenantIsolation(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	a := populate(t, ts, "alpha", "alpha")
	b := populate(t, ts, "bravo", "bravo")
	bHead := must[*apitypes.AuditVerify](t)(b.c.VerifyAudit(ctx))

	// Parameters naming B's objects, under B's mesh and under A's own; and
	// the same shapes naming nothing at all.
	bOwn := map[string]string{"org": b.org.Org.ID, "mesh": b.mesh, "node": b.names[0], "token": b.token.ID, "user": b.user.ID, "key": b.userKey.ID}
	bInA := map[string]string{"org": b.org.Org.ID, "mesh": a.mesh, "node": b.nodes[0].id, "token": b.token.ID, "user": b.user.ID, "key": b.userKey.ID}
	missing := map[string]string{"org": "org_01m8nothere0000000000000000", "mesh": "nothere", "node": "nothere", "token": "tok_01m8nothere000000000000000",
		"user": "usr_01m8nothere000000000000000", "key": "key_01m8nothere000000000000000"}
	missingInA := map[string]string{"org": missing["org"], "mesh": a.mesh, "node": strings.Repeat("ab", 16), "token": missing["token"],
		"user": missing["user"], "key": missing["key"]}
	bNodeByName := map[string]string{"mesh": b.mesh, "node": b.names[1]} // the pending one, by name

	leaks := b.secrets()
	check := func(op apiOp, path string, status int, body []byte) {
		t.Helper()
		for _, s := range leaks {
			if s != "" && strings.Contains(string(body), s) {
				t.Errorf("%s %s: the answer (%d) mentions B's %q: %.200s", op.Method, path, status, s, body)
			}
		}
	}
	walked := 0
	for _, op := range ts.operations() {
		body := bodyFor(t, op, "alpha")
		params := pathParams(op.Path)
		switch {
		case op.Security != "apiKey":
			// Node operations: an API key is no node signature.
			if op.ID == "enroll" {
				continue // authenticated by the join token in the body: see TestEnroll*
			}
			status, got := ts.rawCall(op.Method, op.Path, a.key, body)
			if status != http.StatusUnauthorized {
				t.Errorf("%s with an API key: %d %s", op.ID, status, got)
			}
			check(op, op.Path, status, got)
		case len(params) == 0:
			// Collections and the caller's own organization: scoped to A.
			status, got := ts.rawCall(op.Method, op.Path, a.key, body)
			if status >= 500 {
				t.Errorf("%s: %d %s", op.ID, status, got)
			}
			check(op, op.Path, status, got)
		default:
			pairs := [][2]map[string]string{{bOwn, missing}}
			if slices.Contains(params, "node") || slices.Contains(params, "token") {
				// B's node or token addressed through A's own mesh, and B's
				// pending node by name.
				pairs = append(pairs, [2]map[string]string{bInA, missingInA}, [2]map[string]string{mergeParams(missing, bNodeByName), missing})
			}
			for _, pair := range pairs {
				pb, pm := fill(op.Path, pair[0]), fill(op.Path, pair[1])
				sb, gb := ts.rawCall(op.Method, pb, a.key, body)
				sm, gm := ts.rawCall(op.Method, pm, a.key, body)
				if sb < 400 || sb >= 500 {
					t.Errorf("%s %s: A's key reached B's object: %d %s", op.Method, pb, sb, gb)
				}
				if sb != sm || string(gb) != string(gm) {
					t.Errorf("%s: B's object and a missing one answer differently:\n  %s → %d %s\n  %s → %d %s", op.ID, pb, sb, gb, pm, sm, gm)
				}
				check(op, pb, sb, gb)
			}
		}
		walked++
	}
	if walked < 35 {
		t.Fatalf("walked only %d operations", walked)
	}

	// B did not move: same chain head, same nodes, still verifies.
	after := must[*apitypes.AuditVerify](t)(b.c.VerifyAudit(ctx))
	if !after.OK || after.Head != bHead.Head {
		t.Fatalf("B's audit log moved during A's walk: %+v → %+v", bHead, after)
	}
	nodes := must[[]apitypes.Node](t)(b.c.ListNodes(ctx, b.mesh, ""))
	if len(nodes) != 2 || nodes[0].Status == "revoked" || nodes[1].Status == "revoked" {
		t.Fatalf("B's nodes after the walk: %+v", nodes)
	}
	// A's audit log names nothing of B.
	page := must[*apitypes.AuditPage](t)(a.c.ListAudit(ctx, 0, 1000))
	for _, e := range page.Events {
		for _, s := range leaks {
			if strings.Contains(e.Target, s) || strings.Contains(string(e.After), s) || strings.Contains(string(e.Before), s) {
				t.Errorf("A's audit log entry %d mentions B's %q", e.Seq, s)
			}
		}
	}
	t.Logf("walked %d operations", walked)
}

func mergeParams(base, over map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}
