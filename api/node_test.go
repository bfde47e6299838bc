package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func TestNodeRequestSignature(t *testing.T) {
	key, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	id := key.PublicKeys().ID()
	lookup := func(got identity.NodeID) (*identity.VerifyingKey, error) {
		if got != id {
			return nil, errors.New("unknown node")
		}
		return key.Signing.Public(), nil
	}
	body := []byte(`{"uptime_seconds":5}`)
	req := httptest.NewRequest(http.MethodPost, "https://cp.example"+PathHeartbeat+"?x=1", bytes.NewReader(body))
	SignRequest(req, body, id, key.Signing, t0)

	if got, err := VerifyRequest(req, body, lookup, t0.Add(30*time.Second)); err != nil || got != id {
		t.Fatalf("genuine request: %v", err)
	}
	cases := map[string]func() (*http.Request, []byte, time.Time){
		"other body": func() (*http.Request, []byte, time.Time) { return req, []byte(`{"uptime_seconds":6}`), t0 },
		"other path": func() (*http.Request, []byte, time.Time) {
			r := req.Clone(req.Context())
			r.URL.RawQuery = "x=2"
			return r, body, t0
		},
		"other method": func() (*http.Request, []byte, time.Time) {
			r := req.Clone(req.Context())
			r.Method = http.MethodPut
			return r, body, t0
		},
		"too late":  func() (*http.Request, []byte, time.Time) { return req, body, t0.Add(MaxClockSkew + time.Second) },
		"too early": func() (*http.Request, []byte, time.Time) { return req, body, t0.Add(-MaxClockSkew - time.Second) },
		"no header": func() (*http.Request, []byte, time.Time) {
			r := req.Clone(req.Context())
			r.Header.Del("Authorization")
			return r, body, t0
		},
	}
	for name, mk := range cases {
		r, b, now := mk()
		if _, err := VerifyRequest(r, b, lookup, now); !errors.Is(err, ErrNodeAuth) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	other, _ := identity.GenerateNodeKey()
	forged := httptest.NewRequest(http.MethodPost, "https://cp.example"+PathHeartbeat+"?x=1", bytes.NewReader(body))
	SignRequest(forged, body, id, other.Signing, t0) // claims id, signs with another key
	if _, err := VerifyRequest(forged, body, lookup, t0); !errors.Is(err, ErrNodeAuth) {
		t.Fatalf("forged: %v", err)
	}
}

func TestEnrollProofBindsEverything(t *testing.T) {
	k := PublicKeys{DH: []byte{1}, KEM: []byte{2}, Signing: []byte{3}}
	base := EnrollProof("tok", "alpha", k)
	for name, other := range map[string][]byte{
		"token":  EnrollProof("tok2", "alpha", k),
		"name":   EnrollProof("tok", "alph", k),
		"keys":   EnrollProof("tok", "alpha", PublicKeys{DH: []byte{1}, KEM: []byte{2}, Signing: []byte{4}}),
		"shift":  EnrollProof("to", "kalpha", k),
		"shift2": EnrollProof("tok", "alpha", PublicKeys{DH: []byte{1, 2}, Signing: []byte{3}}),
	} {
		if bytes.Equal(base, other) {
			t.Errorf("proof ignores %s", name)
		}
	}
}

func FuzzParseAuth(f *testing.F) {
	f.Add("X0T-Node id=00112233445566778899aabbccddeeff,ts=1,sig=AAAA")
	f.Add("Bearer x")
	f.Add("X0T-Node id=,ts=,sig=")
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", h)
		if _, _, sig, err := ParseAuth(r); err == nil && len(sig) != identity.SignatureSize {
			t.Fatal("accepted a signature of the wrong size")
		}
	})
}
