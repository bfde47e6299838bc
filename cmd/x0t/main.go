// Command x0t is the x0tta6bl4 mesh VPN: node agent, offline CA, demo.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

type globalFlags struct {
	logLevel  string
	logFormat string
}

func main() {
	var g globalFlags
	root := &cobra.Command{
		Use:           "x0t",
		Short:         "x0tta6bl4: a post-quantum, self-healing mesh VPN",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(caCmd(), certCmd(), nodeCmd(&g), demoCmd(&g), simCmd())
	root.AddCommand(localCommands()...)
	root.AddCommand(adminCommands(&g)...)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "x0t:", err)
		os.Exit(1)
	}
}

// logger builds the process logger from the global flags (and a config's level).
func (g *globalFlags) logger(level string) (*slog.Logger, error) {
	if level == "" {
		level = g.logLevel
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q: want text or json", g.logFormat)
}
