package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
	"github.com/x0tta6bl4/x0t/identity"
)

// fuzzServer is one control plane per fuzzing process, called through its
// handler (no sockets: fuzzing wants speed).
type fuzzServer struct {
	h      http.Handler
	key    string
	ops    []apiOp // operations that take a body
	params map[string]string
	node   *identity.NodeKey
}

var (
	fuzzOnce sync.Once
	fuzzSrv  *fuzzServer
)

func (f *fuzzServer) do(method, path string, body []byte, sign bool) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sign {
		api.SignRequest(req, body, f.node.PublicKeys().ID(), f.node.Signing, time.Now())
	} else {
		req.Header.Set("Authorization", "Bearer "+f.key)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	return w
}

func setupFuzz(t testing.TB) *fuzzServer {
	fuzzOnce.Do(func() {
		dir, err := os.MkdirTemp("", "x0t-fuzz")
		if err != nil {
			t.Fatal(err)
		}
		srv, err := control.New(context.Background(), control.Config{DataDir: dir, Logger: testLogger(),
			EnrollLimit: control.Limit{Rate: 1e9, Burst: 1 << 30}, AuthFailLimit: control.Limit{Rate: 1e9, Burst: 1 << 30}})
		if err != nil {
			t.Fatal(err)
		}
		f := &fuzzServer{h: srv.Handler(), key: srv.AdminKey}
		call := func(method, path, body string, out any) {
			w := f.do(method, path, []byte(body), false)
			if w.Code >= 300 {
				t.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
			}
			if out != nil {
				json.Unmarshal(w.Body.Bytes(), out)
			}
		}
		var user apitypes.User
		var tok apitypes.CreatedToken
		call(http.MethodPost, "/api/v1/meshes", `{"name":"m"}`, nil)
		call(http.MethodPost, "/api/v1/users", `{"name":"fuzzer","role":"viewer"}`, &user)
		call(http.MethodPost, "/api/v1/meshes/m/tokens", `{"auto_approve":true,"max_uses":0}`, &tok)
		f.node, _ = identity.GenerateNodeKey()
		enroll, _ := json.Marshal(controlclient.NewEnrollRequest(tok.Secret, "a", f.node, nil))
		if w := f.do(http.MethodPost, api.PathEnroll, enroll, false); w.Code != 200 {
			t.Fatalf("enroll: %d %s", w.Code, w.Body)
		}
		f.params = map[string]string{"mesh": "m", "node": "a", "user": user.ID, "token": tok.ID,
			"key": "key_01m8nothere000000000000000", "org": "org_01m8nothere0000000000000000"}
		w := f.do(http.MethodGet, "/api/v1/openapi.json", nil, false)
		var doc struct {
			Paths map[string]map[string]struct {
				OperationID string          `json:"operationId"`
				RequestBody json.RawMessage `json:"requestBody"`
			} `json:"paths"`
		}
		json.Unmarshal(w.Body.Bytes(), &doc)
		for path, methods := range doc.Paths {
			for method, op := range methods {
				if op.RequestBody != nil {
					f.ops = append(f.ops, apiOp{ID: op.OperationID, Method: strings.ToUpper(method), Path: path, HasBody: true})
				}
			}
		}
		sort.Slice(f.ops, func(i, j int) bool { return f.ops[i].ID < f.ops[j].ID })
		if len(f.ops) < 12 {
			t.Fatalf("only %d operations with a body", len(f.ops))
		}
		fuzzSrv = f
	})
	return fuzzSrv
}

// FuzzRequestBodies sends arbitrary bodies to every operation that takes
// one (enrollment, heartbeats and policies included): whatever arrives, the
// answer is a success or an RFC 9457 client error, never a server error or
// a panic.
func FuzzRequestBodies(f *testing.F) {
	srv := setupFuzz(f)
	for i, op := range srv.ops {
		if b, ok := requestBodies[op.ID]; ok {
			f.Add(uint8(i), []byte(strings.ReplaceAll(strings.ReplaceAll(b, "%UNIQUE%", "seed"), "%ORG%", "default")))
		}
		f.Add(uint8(i), []byte(`{}`))
		f.Add(uint8(i), []byte(`null`))
		f.Add(uint8(i), []byte(`{"name":"\u0000","tags":[1,2],"acls":{"x":[]}}`))
		f.Add(uint8(i), []byte(`[{"a":`))
	}
	f.Add(uint8(0), []byte(`{"acls":[{"action":"accept","src":["group:a"],"dst":["*:1-65535"]}],"groups":{"group:a":["group:a"]}}`))
	f.Add(uint8(0), []byte(`{"token":"x0t_join_x","name":"n","keys":{"dh":"AAAA","kem":"","signing":""},"proof":"AAAA","endpoints":["1.2.3.4:0"]}`))
	f.Add(uint8(0), []byte(`{"peers":[{"id":"00","rx_bytes":-1}],"uptime_seconds":1e400}`))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		op := srv.ops[int(which)%len(srv.ops)]
		sign := op.ID == "node-heartbeat" || op.ID == "node-renew"
		start := time.Now()
		w := srv.do(op.Method, fill(op.Path, srv.params), body, sign)
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("%s with %q took %v", op.ID, body, took)
		}
		if w.Code >= 500 {
			t.Fatalf("%s with %q: %d %s", op.ID, body, w.Code, w.Body)
		}
		if w.Code >= 400 && w.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s with %q: %d answered as %q", op.ID, body, w.Code, w.Header().Get("Content-Type"))
		}
	})
}
