// Command x0t is the x0tta6bl4 mesh VPN: node agent, offline CA, demo.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type globalFlags struct {
	logLevel  string
	logFormat string
	flags     *pflag.FlagSet // to tell a given flag from its default
	stderr    io.Writer      // where logs go (os.Stderr; tests swap it)
}

func main() {
	g := globalFlags{stderr: os.Stderr}
	root := &cobra.Command{
		Use:           "x0t",
		Short:         "x0tta6bl4: a post-quantum, self-healing mesh VPN",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.register(root.PersistentFlags())
	root.AddCommand(caCmd(), certCmd(), nodeCmd(&g), demoCmd(&g), simCmd())
	root.AddCommand(localCommands()...)
	root.AddCommand(adminCommands(&g)...)
	if err := root.Execute(); err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(os.Stderr, "x0t:", err)
		}
		os.Exit(1)
	}
}

// errSilent fails a command that has already said why on its output.
var errSilent = errors.New("failed")

func (g *globalFlags) register(f *pflag.FlagSet) {
	g.flags = f
	f.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error (env X0T_LOG_LEVEL; config key log_level)")
	f.StringVar(&g.logFormat, "log-format", "text", "log format: text or json (env X0T_LOG_FORMAT)")
}

// setting returns a flag's value, else the environment's, else the config
// file's, else the flag's default: flags > env > file, as everywhere.
func (g *globalFlags) setting(flag, env, file string) string {
	v := g.flags.Lookup(flag).Value.String()
	switch {
	case g.flags.Changed(flag):
		return v
	case os.Getenv(env) != "":
		return os.Getenv(env)
	case file != "":
		return file
	}
	return v
}

// logger builds the process logger (to stderr) from the global flags, the
// environment and a config file's level (fileLevel, "" if none).
func (g *globalFlags) logger(fileLevel string) (*slog.Logger, error) {
	level := g.setting("log-level", "X0T_LOG_LEVEL", fileLevel)
	format := g.setting("log-format", "X0T_LOG_FORMAT", "")
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	w := g.stderr
	if w == nil {
		w = os.Stderr
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		// One object per line, for journald, Loki or any log shipper.
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q: want text or json", format)
}
