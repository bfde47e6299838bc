package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/x0tta6bl4/x0t/config"
	"github.com/x0tta6bl4/x0t/node"
)

func nodeCmd(g *globalFlags) *cobra.Command {
	n := &cobra.Command{Use: "node", Short: "The node agent"}
	var cfgPath, debugListen string
	up := &cobra.Command{
		Use:   "up",
		Short: "Run the node agent in the foreground until SIGINT or SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return errors.New("--config is required (joining a control plane is not built yet)")
			}
			c, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			log, err := g.logger(c.LogLevel)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if debugListen != "" {
				if err := serveDebug(ctx, debugListen, log); err != nil {
					return err
				}
			}
			s, err := node.OpenStatic(c, log)
			if err != nil {
				return err
			}
			err = s.Run(ctx)
			log.Info("node stopped")
			return err
		},
	}
	up.Flags().StringVar(&cfgPath, "config", "", "static node configuration (YAML)")
	up.Flags().StringVar(&debugListen, "debug-listen", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	n.AddCommand(up)
	return n
}
