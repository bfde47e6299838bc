package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/controlclient"
	"github.com/x0tta6bl4/x0t/dashboard"
	"github.com/x0tta6bl4/x0t/lab"
)

func get(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

func TestHandler(t *testing.T) {
	h := dashboard.Handler()
	for _, c := range []struct {
		method, path string
		status       int
		ctype        string
	}{
		{"GET", "/", 200, "text/html"},
		{"HEAD", "/", 200, "text/html"},
		{"GET", "/ui/app.js", 200, "text/javascript"},
		{"GET", "/ui/style.css", 200, "text/css"},
		{"GET", "/ui/favicon.svg", 200, "image/svg+xml"},
		{"GET", "/ui/", 404, ""},
		{"GET", "/ui/nothere.js", 404, ""},
		{"GET", "/ui/../dashboard.go", 404, ""},
		{"GET", "/ui//app.js", 404, ""},
		{"GET", "/elsewhere", 404, ""},
		{"POST", "/", 405, ""},
	} {
		w := get(t, h, c.method, c.path)
		if w.Code != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, w.Code, c.status)
			continue
		}
		if c.ctype != "" && !strings.HasPrefix(w.Header().Get("Content-Type"), c.ctype) {
			t.Errorf("%s %s: Content-Type %q, want %s", c.method, c.path, w.Header().Get("Content-Type"), c.ctype)
		}
		csp := w.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s %s: CSP %q", c.method, c.path, csp)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s %s: headers %v", c.method, c.path, w.Header())
		}
	}
}

// TestServedByControlPlane checks the mount in the control plane: the page
// at /, its assets, and the API and its JSON problems untouched.
func TestServedByControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cp, err := lab.StartControlPlane(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	tc, err := controlclient.TLSConfig(cp.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	fetch := func(path string) (int, string, string) {
		resp, err := c.Get(cp.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if st, ct, body := fetch("/"); st != 200 || !strings.HasPrefix(ct, "text/html") || !strings.Contains(body, "/ui/app.js") {
		t.Fatalf("/: %d %s %.100s", st, ct, body)
	}
	if st, ct, _ := fetch("/ui/app.js"); st != 200 || !strings.HasPrefix(ct, "text/javascript") {
		t.Fatalf("/ui/app.js: %d %s", st, ct)
	}
	for _, p := range []string{"/nothere", "/api/v1/nothere", "/ui/nothere.js"} {
		st, ct, body := fetch(p)
		if st != 404 {
			t.Errorf("%s: %d", p, st)
		}
		if strings.HasPrefix(p, "/api/") || p == "/nothere" {
			var prob map[string]any
			if !strings.HasPrefix(ct, "application/problem+json") || json.Unmarshal([]byte(body), &prob) != nil {
				t.Errorf("%s: not a JSON problem: %s %s", p, ct, body)
			}
		}
	}
	if st, _, body := fetch("/api/v1/auth/whoami"); st != 401 {
		t.Errorf("whoami without a key: %d %s", st, body)
	}
	if st, _, _ := fetch("/api/v1/openapi.json"); st != 200 {
		t.Errorf("openapi: %d", st)
	}
}
