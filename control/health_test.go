package control_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/x0tta6bl4/x0t/control"
)

// The probes answer without an API key; /readyz says no once the store is
// gone.
func TestHealthEndpoints(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.rawClient()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := c.Get(ts.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{control.PathHealthz, control.PathReadyz} {
		if code, body := get(p); code != http.StatusOK || body != "ok\n" {
			t.Errorf("GET %s: %d %q", p, code, body)
		}
	}
	ts.srv.Store().Close()
	if code, _ := get(control.PathReadyz); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz with the store closed: %d", code)
	}
	if code, _ := get(control.PathHealthz); code != http.StatusOK {
		t.Errorf("GET /healthz with the store closed: %d", code)
	}
}
