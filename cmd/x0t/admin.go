package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/x0tta6bl4/x0t/controlclient"
)

// The admin verbs over the control plane API: mesh, token, nodes, acl,
// audit, org, users, keys. They share the connection flags below.

// adminCommands returns "x0t control" and every admin command.
func adminCommands(g *globalFlags) []*cobra.Command {
	a := &adminFlags{}
	cmds := []*cobra.Command{adminMeshCmd(a), adminTokenCmd(a), adminNodesCmd(a), adminACLCmd(a), adminAuditCmd(a),
		adminOrgCmd(a), adminUsersCmd(a), adminKeysCmd(a)}
	for _, c := range cmds {
		a.register(c)
	}
	return append([]*cobra.Command{controlCmd(g)}, cmds...)
}

// adminFlags are the connection and output flags of the admin commands.
type adminFlags struct {
	control     string
	apiKey      string
	fingerprint string
	json        bool
	timeout     time.Duration
}

func (a *adminFlags) register(c *cobra.Command) {
	f := c.PersistentFlags()
	f.StringVar(&a.control, "control", "", "control plane URL, https://host:port (env X0T_CONTROL)")
	f.StringVar(&a.apiKey, "api-key", "", "API key (env X0T_API_KEY)")
	f.StringVar(&a.fingerprint, "control-fingerprint", "", "pin the control plane's TLS certificate by SHA-256 (env X0T_CONTROL_FINGERPRINT)")
	f.BoolVar(&a.json, "json", false, "print JSON instead of a table")
	f.DurationVar(&a.timeout, "timeout", 30*time.Second, "timeout of each API call")
}

// client builds the API client from the flags, falling back to the
// environment.
func (a *adminFlags) client() (*controlclient.Client, error) {
	url := firstOf(a.control, os.Getenv("X0T_CONTROL"))
	if url == "" {
		return nil, errors.New("no control plane: give --control URL or set X0T_CONTROL")
	}
	if !strings.Contains(url, "://") {
		url = "https://" + url
	}
	key := firstOf(a.apiKey, os.Getenv("X0T_API_KEY"))
	if key == "" {
		return nil, errors.New("no API key: give --api-key KEY or set X0T_API_KEY")
	}
	return controlclient.New(url, controlclient.Options{APIKey: strings.TrimSpace(key),
		Fingerprint: firstOf(a.fingerprint, os.Getenv("X0T_CONTROL_FINGERPRINT")), Timeout: a.timeout, UserAgent: "x0t-cli"})
}

func firstOf(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// run wraps a command body with a client and a context.
func (a *adminFlags) run(fn func(ctx context.Context, c *controlclient.Client, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		return fn(cmd.Context(), c, cmd, args)
	}
}

// output prints v as JSON with --json, or else calls table.
func (a *adminFlags) output(w io.Writer, v any, table func(*tabwriter.Writer)) error {
	if a.json {
		return printJSON(w, v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func row(w io.Writer, cols ...any) {
	for i, c := range cols {
		if i > 0 {
			fmt.Fprint(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	fmt.Fprintln(w)
}

// ago formats a time for tables.
func ago(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := time.Since(*t)
	switch {
	case d < 0:
		return "in " + (-d).Round(time.Second).String()
	case d < time.Minute:
		return d.Round(time.Second).String() + " ago"
	case d < 48*time.Hour:
		return d.Round(time.Minute).String() + " ago"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinOrDash(v []string) string {
	if len(v) == 0 {
		return "-"
	}
	return strings.Join(v, ",")
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// readInput reads a file, or standard input for "" or "-".
func readInput(cmd *cobra.Command, path string) ([]byte, error) {
	if path == "" || path == "-" {
		return io.ReadAll(io.LimitReader(cmd.InOrStdin(), 4<<20))
	}
	return os.ReadFile(path)
}

// short keeps the first n characters of an identifier for a table.
func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
