package control_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
	"github.com/x0tta6bl4/x0t/identity"
)

// testServer is a control plane serving real TLS on 127.0.0.1.
type testServer struct {
	t     *testing.T
	srv   *control.Server
	dir   string
	url   string
	admin *controlclient.Client // owner of the operator organization
	stop  func()
}

func testLogger() *slog.Logger {
	if os.Getenv("X0T_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startServer(t *testing.T, tweak func(*control.Config)) *testServer {
	t.Helper()
	dir := t.TempDir()
	cfg := control.Config{Listen: "127.0.0.1:0", DataDir: dir, Logger: testLogger(),
		Debounce: 20 * time.Millisecond, EnrollLimit: control.Limit{Rate: 1000, Burst: 1000},
		AuthFailLimit: control.Limit{Rate: 1000, Burst: 1000}}
	if tweak != nil {
		tweak(&cfg)
	}
	return serve(t, cfg)
}

func serve(t *testing.T, cfg control.Config) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := control.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	ts := &testServer{t: t, srv: srv, dir: cfg.DataDir, url: "https://" + ln.Addr().String()}
	var once bool
	ts.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("server did not shut down")
		}
	}
	t.Cleanup(ts.stop)
	key := srv.AdminKey
	if key == "" {
		b, _ := os.ReadFile(cfg.DataDir + "/" + control.FileAdminKey)
		key = string(b[:len(b)-1])
	}
	ts.admin = ts.client(key)
	return ts
}

// client returns an API client pinned to the server's certificate.
func (ts *testServer) client(key string) *controlclient.Client {
	c, err := controlclient.New(ts.url, controlclient.Options{APIKey: key, Fingerprint: ts.srv.CertFingerprint(), Timeout: 20 * time.Second})
	if err != nil {
		ts.t.Fatal(err)
	}
	return c
}

// rawClient is an HTTP client trusting the server, for hand-made requests.
func (ts *testServer) rawClient() *http.Client {
	tc, err := controlclient.TLSConfig(ts.srv.CertFingerprint())
	if err != nil {
		ts.t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}, Timeout: 20 * time.Second}
}

// newOrg creates a tenant organization and returns its owner's client.
func (ts *testServer) newOrg(name string) (*controlclient.Client, *apitypes.CreateOrgResponse) {
	ts.t.Helper()
	res, err := ts.admin.CreateOrg(context.Background(), apitypes.CreateOrgRequest{Name: name})
	if err != nil {
		ts.t.Fatal(err)
	}
	return ts.client(res.Key.Key), res
}

// testNode is a node's keys and its client.
type testNode struct {
	key *identity.NodeKey
	c   *controlclient.NodeClient
	id  string
}

func (ts *testServer) newNode() *testNode {
	ts.t.Helper()
	k, err := identity.GenerateNodeKey()
	if err != nil {
		ts.t.Fatal(err)
	}
	c := ts.client("").Node(k)
	return &testNode{key: k, c: c, id: c.ID().String()}
}

func (n *testNode) enroll(t *testing.T, token, name string) *api.NodeResponse {
	t.Helper()
	resp, err := n.c.Enroll(context.Background(), controlclient.NewEnrollRequest(token, name, n.key, []string{"192.0.2.1:4242"}))
	if err != nil {
		t.Fatalf("enroll %s: %v", name, err)
	}
	return resp
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ptr[T any](v T) *T { return &v }
