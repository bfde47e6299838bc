package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/x0tta6bl4/x0t/localapi"
	"github.com/x0tta6bl4/x0t/node"
)

// startLocalAPI serves the node's local socket. A socket held by another
// running node is not fatal: this node runs without one, and says so.
func startLocalAPI(path, group string, n *node.Node, info func() localapi.Status, log *slog.Logger) func() {
	if path == "" {
		path = localapi.DefaultSocket
	}
	s, err := localapi.Listen(path, group, n, info, log)
	if err != nil {
		log.Warn("local API not available: x0t status, routes and health will not reach this node", "err", err)
		return func() {}
	}
	log.Info("local API listening", "socket", path)
	return func() { s.Close() }
}

// localCommands are the verbs that talk to the running node.
func localCommands() []*cobra.Command {
	var socket string
	var asJSON bool
	client := func() *localapi.Client {
		if socket == "" {
			socket = firstOf(os.Getenv("X0T_SOCKET"), localapi.DefaultSocket)
		}
		return localapi.NewClient(socket)
	}
	ctx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 10*time.Second)
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the local node: peers, addresses, paths, handshakes, traffic",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cancel := ctx()
			defer cancel()
			st, err := client().Status(c)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), st)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s (%s) mesh %s, %s, listening on %s, up %s, health %s\n", st.Name, st.ID[:8], st.Mesh,
				strings.Join(st.Addrs, " "), st.Listen, st.Uptime.Round(time.Second), st.Health)
			tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tADDRESS\tPATH\tENDPOINT\tHANDSHAKE\tRX\tTX")
			for _, p := range st.Peers {
				path := "mesh"
				if p.Direct {
					path = "direct"
				}
				hs := "-"
				if !p.LastHandshake.IsZero() {
					hs = time.Since(p.LastHandshake).Round(time.Second).String() + " ago"
				}
				addr := ""
				if len(p.Addrs) > 0 {
					addr = p.Addrs[0].String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, addr, path, firstOf(p.Endpoint, "-"), hs,
					bytesString(p.RxBytes), bytesString(p.TxBytes))
			}
			return tw.Flush()
		},
	}
	routes := &cobra.Command{
		Use:   "routes",
		Short: "Show the local node's routing table and links",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cancel := ctx()
			defer cancel()
			r, err := client().Routes(c)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "DESTINATION\tNEXT HOP\tMETRIC\tHOPS\tALTERNATE\tPATH NOW")
			for _, ri := range r.Routes {
				path := "via " + ri.Next
				if ri.Direct {
					path = "direct"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", ri.Dest, ri.Next, ri.Metric, ri.Hops, firstOf(ri.Alt, "-"), path)
			}
			fmt.Fprintln(tw, "\nLINK\tSTATE\tRTT\tLOSS\tMETRIC\t")
			for _, l := range r.Links {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f%%\t%d\t\n", l.Peer, l.State, l.RTT.Round(time.Microsecond), 100*l.Loss, l.Metric)
			}
			return tw.Flush()
		},
	}
	var limit int
	health := &cobra.Command{
		Use:   "health",
		Short: "Show the local node's health state and recent incidents (MAPE-K)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cancel := ctx()
			defer cancel()
			h, err := client().Health(c, limit)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), h)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "health: %s", h.Health.State)
			if !h.Health.Since.IsZero() {
				fmt.Fprintf(w, " since %s", h.Health.Since.Format(time.RFC3339))
			}
			fmt.Fprintln(w)
			for _, r := range h.Health.Reasons {
				fmt.Fprintf(w, "  - %s\n", r)
			}
			if len(h.Incidents) == 0 {
				fmt.Fprintln(w, "no incidents")
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "\nINCIDENT\tSTARTED\tKIND\tSUBJECT\tSTATE\tACTIONS\tWORKED")
			for _, inc := range h.Incidents {
				state := "resolved"
				if inc.Open {
					state = "open"
				}
				var acts []string
				for _, a := range inc.Actions {
					acts = append(acts, fmt.Sprintf("%s:%s", a.Action.Type, a.Result))
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", inc.ID, inc.Started.Format("15:04:05"), inc.Kind,
					firstOf(shortID(inc.Subject), "this node"), state, firstOf(strings.Join(acts, ","), "-"), firstOf(string(inc.Worked), "-"))
			}
			return tw.Flush()
		},
	}
	health.Flags().IntVar(&limit, "limit", 20, "incidents to show")
	cmds := []*cobra.Command{status, routes, health}
	for _, c := range cmds {
		c.Flags().StringVar(&socket, "socket", "", "the node's local socket (default /run/x0t/x0t.sock; env X0T_SOCKET)")
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	}
	return cmds
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func bytesString(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
