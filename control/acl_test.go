package control_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
)

func TestACL(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	_, tok := meshWithToken(t, ts, "m")
	db, web := ts.newNode(), ts.newNode()
	db.enroll(t, tok, "db")
	web.enroll(t, tok, "web")
	must[*apitypes.Node](t)(ts.admin.UpdateNode(ctx, "m", "web", apitypes.UpdateNodeRequest{Tags: &[]string{"web"}}))

	// A new mesh lets its nodes reach each other.
	pol, etag, err := ts.admin.GetACL(ctx, "m")
	if err != nil || !strings.Contains(string(pol), `"*:*"`) || etag == "" {
		t.Fatalf("default policy: %s %q %v", pol, etag, err)
	}
	res := must[*apitypes.ACLTestResponse](t)(ts.admin.TestACL(ctx, "m", apitypes.ACLTestRequest{Src: "web", Dst: "db", Port: 5432}))
	if !res.Pass || res.Results[0].Got != "accept" {
		t.Fatalf("default policy check: %+v", res)
	}

	good := `{"acls":[{"action":"accept","src":["tag:web"],"dst":["node:db:5432"],"proto":"tcp"}],
	"tests":[{"src":"node:web","dst":"node:db","proto":"tcp","port":5432,"want":"accept"},
	         {"src":"node:db","dst":"node:web","proto":"tcp","port":22,"want":"deny"}]}`
	failing := strings.Replace(good, `"port":22,"want":"deny"`, `"port":22,"want":"accept"`, 1)

	// Validation runs the tests against the mesh's nodes without storing.
	v := must[*apitypes.ACLValidateResponse](t)(ts.admin.ValidateACL(ctx, "m", []byte(failing)))
	if v.Valid || v.Error == "" || len(v.Results) != 2 || v.Results[1].Pass {
		t.Fatalf("validate a failing policy: %+v", v)
	}
	// A policy whose test fails is refused and changes nothing.
	_, _, err = ts.admin.SetACL(ctx, "m", []byte(failing), "")
	if controlclient.StatusOf(err) != http.StatusUnprocessableEntity || !strings.Contains(err.Error(), "node:db -> node:web") {
		t.Fatalf("set a failing policy: %v", err)
	}
	if _, e2, _ := ts.admin.GetACL(ctx, "m"); e2 != etag {
		t.Fatal("a refused policy changed the ETag")
	}
	// With a stale ETag, a set is refused; with the current one it goes.
	_, newTag, err := ts.admin.SetACL(ctx, "m", []byte(good), etag)
	if err != nil || newTag == etag {
		t.Fatalf("set with the current ETag: %q %v", newTag, err)
	}
	if _, _, err := ts.admin.SetACL(ctx, "m", []byte(good), etag); controlclient.StatusOf(err) != http.StatusPreconditionFailed {
		t.Fatalf("set with a stale ETag: %v", err)
	}
	res = must[*apitypes.ACLTestResponse](t)(ts.admin.TestACL(ctx, "m", apitypes.ACLTestRequest{}))
	if !res.Pass || len(res.Results) != 2 {
		t.Fatalf("embedded tests: %+v", res)
	}
	for _, c := range []struct {
		src, dst, proto string
		port            uint16
		want            string
	}{
		{"web", "db", "tcp", 5432, "accept"},
		{"web", "db", "tcp", 22, "deny"},
		{"db", "web", "tcp", 5432, "deny"},
		{"web", "db", "udp", 5432, "deny"},
	} {
		r := must[*apitypes.ACLTestResponse](t)(ts.admin.TestACL(ctx, "m", apitypes.ACLTestRequest{Src: c.src, Dst: c.dst, Proto: c.proto, Port: c.port}))
		if r.Results[0].Got != c.want {
			t.Errorf("%s → %s %s/%d: %s, want %s", c.src, c.dst, c.proto, c.port, r.Results[0].Got, c.want)
		}
	}
	// By address too, and an unknown node is a client error.
	dbNode := must[*apitypes.Node](t)(ts.admin.GetNode(ctx, "m", "db"))
	r := must[*apitypes.ACLTestResponse](t)(ts.admin.TestACL(ctx, "m", apitypes.ACLTestRequest{Src: "web", Dst: dbNode.IPv4, Port: 5432}))
	if r.Results[0].Got != "accept" {
		t.Fatalf("by address: %+v", r)
	}
	if _, err := ts.admin.TestACL(ctx, "m", apitypes.ACLTestRequest{Src: "ghost", Dst: "db"}); controlclient.StatusOf(err) != http.StatusUnprocessableEntity {
		t.Fatalf("unknown node: %v", err)
	}
	// The stored policy is the canonical form and is what GET returns.
	got, _, _ := ts.admin.GetACL(ctx, "m")
	if !strings.Contains(string(got), `"node:db:5432"`) {
		t.Fatalf("stored policy: %s", got)
	}
}
