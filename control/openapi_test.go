package control_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// apiOp is one operation of the served OpenAPI document.
type apiOp struct {
	ID, Method, Path string
	Security         string // "apiKey", "nodeSignature" or ""
	HasBody          bool
	BodyRequired     bool
}

// operations reads the OpenAPI document the server serves: the tests walk
// it, so that an endpoint added later can not be left out of them.
func (ts *testServer) operations() []apiOp {
	ts.t.Helper()
	resp, err := ts.rawClient().Get(ts.url + "/api/v1/openapi.json")
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			OperationID string                `json:"operationId"`
			Security    []map[string][]string `json:"security"`
			RequestBody *struct {
				Required bool `json:"required"`
			} `json:"requestBody"`
		} `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		ts.t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") || len(doc.Paths) == 0 {
		ts.t.Fatalf("OpenAPI document: version %q, %d paths", doc.OpenAPI, len(doc.Paths))
	}
	var ops []apiOp
	for path, methods := range doc.Paths {
		for method, op := range methods {
			o := apiOp{ID: op.OperationID, Method: strings.ToUpper(method), Path: path, HasBody: op.RequestBody != nil}
			if op.RequestBody != nil {
				o.BodyRequired = op.RequestBody.Required
			}
			for _, s := range op.Security {
				for k := range s {
					o.Security = k
				}
			}
			ops = append(ops, o)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].ID < ops[j].ID })
	return ops
}

var paramRE = regexp.MustCompile(`\{([a-z]+)\}`)

// fill substitutes path parameters.
func fill(path string, params map[string]string) string {
	return paramRE.ReplaceAllStringFunc(path, func(m string) string {
		v, ok := params[m[1:len(m)-1]]
		if !ok {
			panic("no value for " + m)
		}
		return v
	})
}

func pathParams(path string) []string {
	var out []string
	for _, m := range paramRE.FindAllStringSubmatch(path, -1) {
		out = append(out, m[1])
	}
	return out
}

// rawCall sends one request with an API key and returns status and body.
func (ts *testServer) rawCall(method, path, key string, body []byte) (int, []byte) {
	ts.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.url+path, rd)
	if err != nil {
		ts.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := ts.rawClient().Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// requestBodies holds a valid body for every operation that takes one.
// TestOpenAPICoverage fails if an operation with a body is missing here.
var requestBodies = map[string]string{
	"update-own-org": `{"name":"%ORG%"}`,
	"create-org":     `{"name":"%UNIQUE%"}`,
	"create-user":    `{"name":"%UNIQUE%","role":"viewer"}`,
	"update-user":    `{"role":"viewer"}`,
	"create-key":     `{"name":"k","role":"viewer"}`,
	"create-mesh":    `{"name":"%UNIQUE%"}`,
	"update-mesh":    `{"description":"changed"}`,
	"create-token":   `{}`,
	"update-node":    `{"name":"renamed"}`,
	"set-acl":        `{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}`,
	"validate-acl":   `{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}`,
	"test-acl":       `{}`,
	"enroll":         `{"token":"x","name":"x","keys":{"dh":"","kem":"","signing":""},"proof":""}`,
	"node-heartbeat": `{"uptime_seconds":1}`,
}

var uniqueN int

func bodyFor(t *testing.T, op apiOp, org string) []byte {
	t.Helper()
	b, ok := requestBodies[op.ID]
	if !ok {
		if op.HasBody && op.BodyRequired {
			t.Fatalf("operation %s takes a body: add one to requestBodies", op.ID)
		}
		return nil
	}
	uniqueN++
	b = strings.ReplaceAll(b, "%UNIQUE%", "u"+strings.Repeat("x", uniqueN%5)+string(rune('a'+uniqueN%26))+string(rune('a'+uniqueN/26%26)))
	b = strings.ReplaceAll(b, "%ORG%", org)
	return []byte(b)
}

// TestOpenAPICoverage checks the document against the server's own table
// of permissions and the test tables: every API-key operation has a role,
// every body a sample.
func TestOpenAPICoverage(t *testing.T) {
	ts := startServer(t, nil)
	perms := ts.srv.Permissions()
	seen := map[string]bool{}
	for _, op := range ts.operations() {
		if op.ID == "" || seen[op.ID] {
			t.Errorf("%s %s: missing or duplicate operation ID %q", op.Method, op.Path, op.ID)
		}
		seen[op.ID] = true
		if !strings.HasPrefix(op.Path, "/api/v1/") {
			t.Errorf("%s outside /api/v1: %s", op.ID, op.Path)
		}
		switch op.Security {
		case "apiKey":
			if _, ok := perms[op.ID]; !ok {
				t.Errorf("%s: no role in the server's permissions", op.ID)
			}
			if _, ok := expectedRoles[op.ID]; !ok {
				t.Errorf("%s: not in the role test's table", op.ID)
			}
		case "nodeSignature", "":
			if !nodeOps[op.ID] {
				t.Errorf("%s: an operation without an API key that the tests do not know", op.ID)
			}
		}
		if op.HasBody && op.BodyRequired {
			if _, ok := requestBodies[op.ID]; !ok {
				t.Errorf("%s: no sample body", op.ID)
			}
		}
	}
	for id := range perms {
		if !seen[id] {
			t.Errorf("%s has a permission but is not in the OpenAPI document", id)
		}
	}
	t.Logf("%d operations", len(seen))
}

// nodeOps are the operations that take no API key.
var nodeOps = map[string]bool{"enroll": true, "node-status": true, "node-netmap": true, "node-heartbeat": true, "node-renew": true}

// TestOpenAPIContentTypes checks the parts of the document huma can not
// infer: the netmap stream is NDJSON, and signed node bodies are JSON only.
func TestOpenAPIContentTypes(t *testing.T) {
	ts := startServer(t, nil)
	resp, err := ts.rawClient().Get(ts.url + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Paths map[string]map[string]struct {
			RequestBody *struct {
				Content map[string]any `json:"content"`
			} `json:"requestBody"`
			Responses map[string]struct {
				Content map[string]any `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	stream := doc.Paths["/api/v1/node/netmap"]["get"].Responses["200"].Content
	if _, ok := stream["application/x-ndjson"]; !ok || len(stream) != 1 {
		t.Errorf("netmap stream content: %v", stream)
	}
	for path, methods := range doc.Paths {
		for method, op := range methods {
			if op.RequestBody == nil {
				continue
			}
			if _, ok := op.RequestBody.Content["application/json"]; !ok || len(op.RequestBody.Content) != 1 {
				t.Errorf("%s %s takes %v", method, path, op.RequestBody.Content)
			}
		}
	}
}
