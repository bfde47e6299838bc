package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestDemoSucceeds(t *testing.T) {
	var out bytes.Buffer
	err := Run(context.Background(), &out, Options{Nodes: 3, Pings: 2, HTTPBytes: 1 << 20})
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{"X25519 + ML-KEM-768", "Ed25519 + ML-DSA-65", "alpha    -> beta", "IPv6 min/avg/max", "SHA-256 matches", "demo OK"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestDemoReportsFailure checks that the demo fails when what it shows fails:
// with its context already cancelled no ping can succeed.
func TestDemoReportsFailure(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Run(ctx, &out, Options{Nodes: 3, Pings: 1, HTTPBytes: 1 << 10})
	if err == nil {
		t.Fatalf("demo succeeded with a cancelled context:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "demo FAILED") {
		t.Errorf("output does not say it failed:\n%s", out.String())
	}
}

func TestDemoValidatesOptions(t *testing.T) {
	if err := Run(context.Background(), &bytes.Buffer{}, Options{Nodes: 2}); err == nil {
		t.Fatal("two nodes accepted")
	}
}
