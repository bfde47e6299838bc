// Command simrun runs the mesh simulator from the command line, with the flags
// `x0t sim` takes; it exists so the figures in docs/routing.md can be
// reproduced before and apart from the x0t binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/x0tta6bl4/x0t/sim"
)

func main() {
	var o sim.Options
	var fail string
	flag.IntVar(&o.Nodes, "nodes", 100, "number of nodes")
	flag.StringVar(&o.Topology, "topology", "random", "line, grid or random")
	flag.Uint64Var(&o.Seed, "seed", 1, "random seed")
	flag.StringVar(&fail, "fail", "", "failures, e.g. link:3-7@20s,node:5@40s-50s,random:10@30s")
	flag.DurationVar(&o.Duration, "duration", 0, "simulated time (default: last failure + 10s, at least 20s)")
	flag.Float64Var(&o.Loss, "loss", 0, "per-message loss on every link")
	flag.IntVar(&o.Flows, "flows", 0, "data flows (default 16)")
	flag.Parse()
	var err error
	if o.Failures, err = sim.ParseFailures(fail); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := sim.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := r.WriteTo(os.Stdout); err != nil {
		os.Exit(1)
	}
	if !r.Converged() {
		os.Exit(3)
	}
}
