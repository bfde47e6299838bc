package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/lab"
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
// a node that stops once the mesh is up makes pings and the transfer fail.
func TestDemoReportsFailure(t *testing.T) {
	var out bytes.Buffer
	opt := Options{Nodes: 3, Pings: 1, HTTPBytes: 1 << 10}
	opt.sabotage = func(nodes []*lab.Node) { nodes[1].Stop() }
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	err := Run(ctx, &out, opt)
	if err == nil {
		t.Fatalf("demo succeeded with a node down:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "demo FAILED") || !strings.Contains(out.String(), "beta") {
		t.Errorf("output does not say what failed:\n%s", out.String())
	}
	// Failing early (no control plane can start) is reported too.
	out.Reset()
	dead, stop := context.WithCancel(context.Background())
	stop()
	if err := Run(dead, &out, Options{Nodes: 3, Pings: 1, HTTPBytes: 1}); err == nil || !strings.Contains(out.String(), "demo FAILED") {
		t.Fatalf("cancelled demo: %v\n%s", err, out.String())
	}
}

func TestDemoValidatesOptions(t *testing.T) {
	if err := Run(context.Background(), &bytes.Buffer{}, Options{Nodes: 2}); err == nil {
		t.Fatal("two nodes accepted")
	}
}
