package control_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/x0tta6bl4/x0t/control/apitypes"
)

// expectedRoles is the permission model, written down independently of the
// server's table: the least role each operation needs. Operations marked
// operator also need a key of the operator organization.
var expectedRoles = map[string]string{
	"whoami": "viewer", "get-own-org": "viewer", "update-own-org": "owner",
	"list-orgs": "admin", "create-org": "admin", "get-org": "viewer", "delete-org": "owner",
	"list-users": "admin", "create-user": "admin", "get-user": "admin", "update-user": "admin", "delete-user": "admin",
	"list-keys": "admin", "create-key": "viewer", "get-key": "admin", "delete-key": "viewer",
	"list-meshes": "viewer", "create-mesh": "admin", "get-mesh": "viewer", "update-mesh": "admin", "delete-mesh": "admin",
	"list-tokens": "member", "create-token": "member", "get-token": "member", "revoke-token": "member",
	"list-nodes": "viewer", "get-node": "viewer", "update-node": "member", "approve-node": "admin", "revoke-node": "admin",
	"delete-node": "admin", "get-node-telemetry": "viewer", "get-topology": "viewer",
	"get-acl": "viewer", "set-acl": "admin", "validate-acl": "viewer", "test-acl": "viewer",
	"list-audit": "admin", "verify-audit": "admin", "list-checkpoints": "admin", "create-checkpoint": "admin",
	"get-checkpoint-key": "viewer",
}

var roleRank = map[string]int{"viewer": 1, "member": 2, "admin": 3, "owner": 4}

// TestRolePermissions calls every API-key operation with a key of each role
// of the operator organization. Path parameters name objects that do not
// exist, so nothing is destroyed: a role below the operation's gets 403,
// any other gets past the check (and then 2xx, 404, 409 or 422).
func TestRolePermissions(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	for id, want := range ts.srv.Permissions() {
		if expectedRoles[id] != want {
			t.Errorf("%s: the server requires %s, the model says %s", id, want, expectedRoles[id])
		}
	}
	keys := map[string]string{}
	for role := range roleRank {
		u := must[*apitypes.User](t)(ts.admin.CreateUser(ctx, apitypes.CreateUserRequest{Name: "user-" + role, Role: role}))
		k := must[*apitypes.CreatedKey](t)(ts.admin.CreateKey(ctx, apitypes.CreateKeyRequest{Name: role, Role: role, UserID: u.ID}))
		keys[role] = k.Key
	}
	must[*apitypes.Mesh](t)(ts.admin.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: "m"}))
	params := map[string]string{"org": "org_01m8nothere0000000000000000", "mesh": "m", "node": "nothere",
		"token": "tok_01m8nothere000000000000000", "user": "usr_01m8nothere000000000000000", "key": "key_01m8nothere000000000000000"}
	org := must[*apitypes.Org](t)(ts.admin.Org(ctx))
	checked := 0
	for _, op := range ts.operations() {
		if op.Security != "apiKey" {
			continue
		}
		need, ok := expectedRoles[op.ID]
		if !ok {
			t.Errorf("%s: not in the model", op.ID)
			continue
		}
		for role, key := range keys {
			status, body := ts.rawCall(op.Method, fill(op.Path, params), key, bodyFor(t, op, org.Name))
			allowed := roleRank[role] >= roleRank[need]
			switch {
			case allowed && (status == http.StatusForbidden || status == http.StatusUnauthorized || status >= 500):
				t.Errorf("%s as %s (needs %s): %d %s", op.ID, role, need, status, body)
			case !allowed && status != http.StatusForbidden:
				t.Errorf("%s as %s (needs %s): %d, want 403: %s", op.ID, role, need, status, body)
			}
			checked++
		}
	}
	t.Logf("%d operation × role checks", checked)

	// A key never exceeds its user's role, and nobody mints a stronger key.
	viewer := ts.client(keys["viewer"])
	if _, err := viewer.CreateKey(ctx, apitypes.CreateKeyRequest{Name: "up", Role: "admin"}); err == nil {
		t.Fatal("a viewer created an admin key")
	}
	admin := ts.client(keys["admin"])
	if _, err := admin.CreateUser(ctx, apitypes.CreateUserRequest{Name: "boss", Role: "owner"}); err == nil {
		t.Fatal("an admin created an owner")
	}
	member := ts.client(keys["member"])
	if _, err := member.CreateToken(ctx, "m", apitypes.CreateTokenRequest{AutoApprove: true}); err == nil {
		t.Fatal("a member created an auto-approving token")
	}
	who := must[*apitypes.Whoami](t)(admin.Whoami(ctx))
	if _, err := ts.admin.UpdateUser(ctx, who.User.ID, apitypes.UpdateUserRequest{Role: ptr("viewer")}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ListUsers(ctx); err == nil {
		t.Fatal("the key of a demoted user kept its role")
	}
	// The last owner stays.
	me := must[*apitypes.Whoami](t)(ts.admin.Whoami(ctx))
	owners := 0
	for _, u := range must[[]apitypes.User](t)(ts.admin.ListUsers(ctx)) {
		if u.Role == "owner" {
			owners++
		}
	}
	if owners == 1 {
		if err := ts.admin.DeleteUser(ctx, me.User.ID); err == nil {
			t.Fatal("the last owner was deleted")
		}
	}
	// A deleted key stops working at once.
	if err := ts.admin.DeleteKey(ctx, who.Key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Whoami(ctx); err == nil {
		t.Fatal("a deleted key still works")
	}
}
