package controlclient_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/agent"
	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/controlclient"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/netmap"
)

// The node agent builds on NodeClient through its Client interface.
var _ agent.Client = (*controlclient.NodeClient)(nil)

func tlsServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, string) {
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	sum := sha256.Sum256(srv.Certificate().Raw)
	return srv, hex.EncodeToString(sum[:])
}

func TestFingerprintPin(t *testing.T) {
	srv, fp := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(401)
			fmt.Fprint(w, `{"title":"Unauthorized","status":401,"detail":"bad key"}`)
			return
		}
		fmt.Fprint(w, `{"id":"org_1","name":"acme","operator":false,"created_at":"2026-01-01T00:00:00Z"}`)
	})
	colons := strings.ToUpper(fp[:2])
	for i := 2; i < len(fp); i += 2 {
		colons += ":" + strings.ToUpper(fp[i:i+2])
	}
	for _, pin := range []string{fp, colons} {
		c, err := controlclient.New(srv.URL, controlclient.Options{APIKey: "k", Fingerprint: pin})
		if err != nil {
			t.Fatal(err)
		}
		org, err := c.Org(context.Background())
		if err != nil || org.Name != "acme" {
			t.Fatalf("pin %s: %+v, %v", pin, org, err)
		}
	}
	c, _ := controlclient.New(srv.URL, controlclient.Options{APIKey: "k", Fingerprint: strings.Repeat("0", 64)})
	if _, err := c.Org(context.Background()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("wrong pin: %v", err)
	}
	c, _ = controlclient.New(srv.URL, controlclient.Options{APIKey: "k"}) // system pool: not trusted
	if _, err := c.Org(context.Background()); err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
	c, _ = controlclient.New(srv.URL, controlclient.Options{APIKey: "nope", Fingerprint: fp})
	_, err := c.Org(context.Background())
	if controlclient.StatusOf(err) != 401 || err.Error() != "401 Unauthorized: bad key" {
		t.Fatalf("API error: %v", err)
	}
	for _, bad := range []string{"http://x", "nothing", "https://"} {
		if _, err := controlclient.New(bad, controlclient.Options{}); err == nil {
			t.Errorf("URL %q accepted", bad)
		}
	}
	if _, err := controlclient.New(srv.URL, controlclient.Options{Fingerprint: "abc"}); err == nil {
		t.Error("short fingerprint accepted")
	}
}

func TestStreamNetmap(t *testing.T) {
	key, _ := identity.GenerateNodeKey()
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	srv, fp := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		id, _, _, err := api.ParseAuth(r)
		if err != nil || id != key.PublicKeys().ID() || r.URL.Query().Get("since") != "7" {
			w.WriteHeader(401)
			return
		}
		if r.Header.Get("X-Test") == "revoked" {
			w.WriteHeader(403)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, `{"payload":"AQ==","signature":"Ag=="}`+"\n\n"+`{"payload":"Aw==","signature":"BA=="}`+"\n")
		w.(http.Flusher).Flush()
		select { // then nothing at all: the client's idle timer ends it
		case <-r.Context().Done():
		case <-hold:
		}
	})
	c, _ := controlclient.New(srv.URL, controlclient.Options{Fingerprint: fp})
	n := c.Node(key)
	n.StreamIdle = 300 * time.Millisecond
	var got []string
	start := time.Now()
	err := n.StreamNetmap(context.Background(), 7, func(s *netmap.Signed) error {
		got = append(got, fmt.Sprint(s.Payload[0], s.Signature[0]))
		return nil
	})
	if fmt.Sprint(got) != "[1 2 3 4]" || err == nil || !strings.Contains(err.Error(), "idle") || time.Since(start) > 5*time.Second {
		t.Fatalf("stream: %v, %v", got, err)
	}
	// The iterator form, stopped early by the caller.
	count := 0
	for s, err := range n.Netmaps(context.Background(), 7) {
		if err != nil {
			t.Fatal(err)
		}
		if count++; s == nil || count == 2 {
			break
		}
	}
	// fn's error ends the stream and is returned.
	boom := errors.New("boom")
	if err := n.StreamNetmap(context.Background(), 7, func(*netmap.Signed) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn error: %v", err)
	}
}
