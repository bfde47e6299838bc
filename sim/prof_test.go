package sim

import (
	"context"
	"os"
	"testing"
)

func TestProf(t *testing.T) {
	if os.Getenv("SIMPROF") == "" {
		t.Skip()
	}
	fs, _ := ParseFailures("random:5@15s,node:7@20s")
	r, err := Run(context.Background(), Options{Nodes: 1000, Topology: os.Getenv("SIMPROF"), Seed: 1, Failures: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
}
