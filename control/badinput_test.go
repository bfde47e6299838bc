package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
)

// problem checks an RFC 9457 answer.
func problem(t *testing.T, what string, resp *http.Response, want int) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d, want %d: %s", what, resp.StatusCode, want, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s: content type %q", what, ct)
	}
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil || p["status"] != float64(want) || p["title"] == nil {
		t.Fatalf("%s: not a problem document: %s", what, body)
	}
	return p
}

func TestBadInput(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	must[*apitypes.Mesh](t)(ts.admin.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: "m"}))
	key := ts.srv.AdminKey
	hc := ts.rawClient()
	send := func(method, path string, body io.Reader, contentLength int64) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, ts.url+path, body)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		if contentLength != 0 {
			req.ContentLength = contentLength
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	big := func(n int) io.Reader { return strings.NewReader(`{"name":"` + strings.Repeat("a", n) + `"}`) }

	// Oversized bodies: announced, chunked, and for each body size class.
	problem(t, "5 MiB announced", send(http.MethodPost, "/api/v1/meshes", big(5<<20), 0), http.StatusRequestEntityTooLarge)
	problem(t, "100 KiB mesh", send(http.MethodPost, "/api/v1/meshes", big(100<<10), -1), http.StatusRequestEntityTooLarge)
	problem(t, "100 KiB enroll", send(http.MethodPost, api.PathEnroll, big(100<<10), 0), http.StatusRequestEntityTooLarge)
	problem(t, "3 MiB acl", send(http.MethodPut, "/api/v1/meshes/m/acl", big(3<<20), -1), http.StatusRequestEntityTooLarge)
	problem(t, "3 MiB heartbeat", send(http.MethodPost, api.PathHeartbeat, big(3<<20), -1), http.StatusRequestEntityTooLarge)

	// Malformed and invalid bodies and parameters.
	for _, c := range []struct {
		what, method, path, body string
		want                     int
	}{
		{"not JSON", http.MethodPost, "/api/v1/meshes", `{"name":`, http.StatusBadRequest},
		{"unknown field", http.MethodPost, "/api/v1/meshes", `{"name":"x","color":"red"}`, http.StatusUnprocessableEntity},
		{"bad name", http.MethodPost, "/api/v1/meshes", `{"name":"-bad-"}`, http.StatusUnprocessableEntity},
		{"wrong type", http.MethodPost, "/api/v1/meshes", `{"name":5}`, http.StatusUnprocessableEntity},
		{"bad prefix", http.MethodPost, "/api/v1/meshes", `{"name":"x","ipv4_prefix":"100.64.0.1/10"}`, http.StatusUnprocessableEntity},
		{"v6 prefix", http.MethodPost, "/api/v1/meshes", `{"name":"x","ipv4_prefix":"fd00::/48"}`, http.StatusUnprocessableEntity},
		{"bad transport", http.MethodPost, "/api/v1/meshes", `{"name":"x","transports":["carrier-pigeon"]}`, http.StatusUnprocessableEntity},
		{"bad validity", http.MethodPost, "/api/v1/meshes", `{"name":"x","cert_validity":"1s"}`, http.StatusUnprocessableEntity},
		{"bad role", http.MethodPost, "/api/v1/users", `{"name":"x","role":"god"}`, http.StatusUnprocessableEntity},
		{"bad ttl", http.MethodPost, "/api/v1/meshes/m/tokens", `{"ttl":"forever"}`, http.StatusUnprocessableEntity},
		{"negative uses", http.MethodPost, "/api/v1/meshes/m/tokens", `{"max_uses":-1}`, http.StatusUnprocessableEntity},
		{"bad tag", http.MethodPost, "/api/v1/meshes/m/tokens", `{"tags":["Not A Tag"]}`, http.StatusUnprocessableEntity},
		{"bad policy", http.MethodPut, "/api/v1/meshes/m/acl", `{"acls":[{"action":"accept","src":["group:nope"],"dst":["*:*"]}]}`, http.StatusUnprocessableEntity},
		{"policy not JSON", http.MethodPut, "/api/v1/meshes/m/acl", `acls`, http.StatusUnprocessableEntity},
		{"bad path parameter", http.MethodGet, "/api/v1/meshes/Bad%20Name", ``, http.StatusUnprocessableEntity},
		{"bad query", http.MethodGet, "/api/v1/meshes?limit=0", ``, http.StatusUnprocessableEntity},
		{"huge query", http.MethodGet, "/api/v1/meshes?limit=100000", ``, http.StatusUnprocessableEntity},
		{"bad audit filter", http.MethodGet, "/api/v1/audit?kind=everything", ``, http.StatusUnprocessableEntity},
		{"no such endpoint", http.MethodGet, "/api/v1/nothing", ``, http.StatusNotFound},
		{"wrong method", http.MethodPatch, "/api/v1/audit", ``, http.StatusMethodNotAllowed},
		{"enroll without keys", http.MethodPost, api.PathEnroll, `{"token":"x","name":"n"}`, http.StatusUnprocessableEntity},
		{"enroll with short keys", http.MethodPost, api.PathEnroll, `{"token":"x","name":"n","keys":{"dh":"AA==","kem":"AA==","signing":"AA=="},"proof":"AA=="}`, http.StatusUnprocessableEntity},
	} {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		p := problem(t, c.what, send(c.method, c.path, body, 0), c.want)
		if c.want == http.StatusUnprocessableEntity && p["detail"] == nil {
			t.Errorf("%s: no detail: %v", c.what, p)
		}
	}

	// Node bodies are checked after the signature.
	_, tok := meshWithToken(t, ts, "n")
	n := ts.newNode()
	n.enroll(t, tok, "a")
	for _, hb := range []api.Heartbeat{
		{Health: "on fire"},
		{Endpoints: []string{"not-an-endpoint"}},
		{Peers: []api.PeerTelemetry{{ID: "zz"}}},
		{Uptime: -1},
	} {
		if err := n.c.Heartbeat(ctx, &hb); controlclient.StatusOf(err) != http.StatusUnprocessableEntity {
			t.Errorf("heartbeat %+v: %v", hb, err)
		}
	}
	good := api.Heartbeat{Health: "healthy", Uptime: 5, Peers: []api.PeerTelemetry{{ID: strings.Repeat("0a", 16), RxBytes: 10, TxBytes: 20}}}
	if err := n.c.Heartbeat(ctx, &good); err != nil {
		t.Fatal(err)
	}
	node := must[*apitypes.Node](t)(ts.admin.GetNode(ctx, "n", "a"))
	if node.RxBytes != 10 || node.TxBytes != 20 || node.Health != "healthy" || node.LastSeen == nil {
		t.Fatalf("telemetry in the node view: %+v", node)
	}
	tel := must[*apitypes.NodeTelemetry](t)(ts.admin.NodeTelemetry(ctx, "n", "a"))
	if !bytes.Contains(tel.Report, []byte(`"rx_bytes":10`)) {
		t.Fatalf("telemetry: %s", tel.Report)
	}
	// Telemetry is not an audited mutation.
	before := must[*apitypes.AuditVerify](t)(ts.admin.VerifyAudit(ctx))
	if err := n.c.Heartbeat(ctx, &good); err != nil {
		t.Fatal(err)
	}
	if after := must[*apitypes.AuditVerify](t)(ts.admin.VerifyAudit(ctx)); after.Head != before.Head {
		t.Fatal("a heartbeat entered the audit log")
	}
}

func TestRateLimits(t *testing.T) {
	ts := startServer(t, func(c *control.Config) {
		c.EnrollLimit = control.Limit{Rate: 0.01, Burst: 3}
		c.AuthFailLimit = control.Limit{Rate: 0.01, Burst: 5}
	})
	ctx := context.Background()
	_, tok := meshWithToken(t, ts, "m")
	var last error
	for i := range 5 {
		n := ts.newNode()
		_, last = n.c.Enroll(ctx, controlclient.NewEnrollRequest(tok, "n", n.key, nil))
		if i < 3 && last != nil {
			t.Fatalf("enrollment %d: %v", i, last)
		}
	}
	if controlclient.StatusOf(last) != http.StatusTooManyRequests {
		t.Fatalf("enrollments past the limit: %v", last)
	}
	// Failed authentications lock the address out, even for a good key.
	bad := ts.client("x0t_key_guess")
	for range 5 {
		if _, err := bad.ListMeshes(ctx); controlclient.StatusOf(err) != http.StatusUnauthorized {
			t.Fatalf("bad key: %v", err)
		}
	}
	if _, err := bad.ListMeshes(ctx); controlclient.StatusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("sixth bad key: %v", err)
	}
	if _, err := ts.admin.ListMeshes(ctx); controlclient.StatusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("good key from a locked-out address: %v", err)
	}
	_ = time.Now
}
