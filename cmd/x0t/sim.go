package main

import (
	"context"
	"errors"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/x0tta6bl4/x0t/internal/progress"
	"github.com/x0tta6bl4/x0t/sim"
)

func simCmd() *cobra.Command {
	var o sim.Options
	var fail string
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate a mesh of many nodes on simulated time (the real router and link monitor)",
		Long: `Simulate a mesh of many nodes in one process: the real routing protocol and link
monitoring, with the real message formats and hybrid signatures, over an in-memory
network with delay, loss and cuts, on simulated time; every node also runs its
MAPE-K self-healing loop. Prints convergence after start and after each failure,
control traffic per node, path stretch, delivery, and the loops' incidents and actions.

Failures, comma separated (a cut, crash or fault at T, ended at T2):
  link:A-B@T[-T2]  node:N@T[-T2]  random:K@T[-T2]  randnode:K@T[-T2]
  lossy:A-B=P@T[-T2]   the link loses a fraction P of messages each way
  lossy:busy=P@T[-T2]  the same on the link most flows cross at T
  forge:N@T[-T2]       node N sends its neighbours forged adverts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Failures, err = sim.ParseFailures(fail); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			// A spinner with the elapsed time on a terminal: a large mesh
			// takes minutes before the report appears. Quiet in pipes.
			ph := progress.New(cmd.ErrOrStderr()).Start("simulating %d nodes (%s topology, seed %d)", o.Nodes, o.Topology, o.Seed)
			r, err := sim.Run(ctx, o)
			ph.End(err)
			if err != nil {
				return err
			}
			if _, err := r.WriteTo(cmd.OutOrStdout()); err != nil {
				return err
			}
			if !r.Converged() {
				return errors.New("the simulated mesh did not converge after every phase")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Nodes, "nodes", 100, "number of nodes")
	f.StringVar(&o.Topology, "topology", "random", "line, grid or random")
	f.Uint64Var(&o.Seed, "seed", 1, "random seed")
	f.StringVar(&fail, "fail", "", "failures, e.g. link:3-7@20s,node:5@40s-50s,random:10@30s")
	f.DurationVar(&o.Duration, "duration", 0, "simulated time (default: last failure + 10s, at least 20s)")
	f.Float64Var(&o.Loss, "loss", 0, "per-message loss on every link (0..1)")
	f.IntVar(&o.Flows, "flows", 0, "simulated data flows (default 16)")
	f.BoolVar(&o.NoHeal, "no-heal", false, "run routing alone, without the MAPE-K loops")
	return cmd
}
