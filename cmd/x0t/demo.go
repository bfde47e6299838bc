package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/x0tta6bl4/x0t/demo"
	"github.com/x0tta6bl4/x0t/internal/progress"
)

func demoCmd(g *globalFlags) *cobra.Command {
	opt := demo.DefaultOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a mesh of netstack nodes in one process and show traffic between them (no root, no setup)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, 55*time.Second)
			defer cancel()
			// Phases with a spinner on stderr when it is a terminal; the
			// report on stdout is the same either way.
			opt.Progress = progress.New(cmd.ErrOrStderr())
			return demo.Run(ctx, cmd.OutOrStdout(), opt)
		},
	}
	cmd.Flags().IntVar(&opt.Nodes, "nodes", opt.Nodes, "number of nodes (3-8)")
	cmd.Flags().IntVar(&opt.Pings, "pings", opt.Pings, "echo requests per pair and address family")
	cmd.Flags().IntVar(&opt.HTTPBytes, "http-bytes", opt.HTTPBytes, "size of the HTTP transfer")
	return cmd
}
