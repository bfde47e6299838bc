package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/x0tta6bl4/x0t/heal"
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
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the local node: peers, addresses, paths, handshakes, traffic",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showLocal(cmd, asJSON, client().Status, printStatus)
		},
	}
	routes := &cobra.Command{
		Use:   "routes",
		Short: "Show the local node's routing table and links",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showLocal(cmd, asJSON, client().Routes, printRoutes)
		},
	}
	var limit int
	health := &cobra.Command{
		Use:   "health",
		Short: "Show the local node's health state and recent incidents (MAPE-K)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fetch := func(ctx context.Context) (*heal.Snapshot, error) { return client().Health(ctx, limit) }
			return showLocal(cmd, asJSON, fetch, printHealth)
		},
	}
	health.Flags().IntVar(&limit, "limit", 20, "incidents to show")
	cmds := []*cobra.Command{status, routes, health, pingCommand(client, &asJSON)}
	for _, c := range cmds {
		c.Flags().StringVar(&socket, "socket", "", "the node's local socket (default /run/x0t/x0t.sock; env X0T_SOCKET)")
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	}
	return cmds
}

// printStatus prints `x0t status`.
func printStatus(w io.Writer, st *localapi.Status) error {
	fmt.Fprintf(w, "%s (%s) mesh %s, %s, listening on %s, up %s, health %s\n", st.Name, st.ID[:8], st.Mesh,
		strings.Join(st.Addrs, " "), st.Listen, st.Uptime.Round(time.Second), st.Health)
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tADDRESS\tPATH\tTRANSPORT\tENDPOINT\tHANDSHAKE\tRX\tTX")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, addr, path, firstOf(p.Transport, "-"), firstOf(p.Endpoint, "-"), hs,
			bytesString(p.RxBytes), bytesString(p.TxBytes))
	}
	return tw.Flush()
}

// printRoutes prints `x0t routes`: the routing table, then the links.
func printRoutes(w io.Writer, r *localapi.Routes) error {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
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
}

// printHealth prints `x0t health`: the state and its reasons, then the incidents.
func printHealth(w io.Writer, h *heal.Snapshot) error {
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
}

// showLocal asks the local node for one view (fetch, within 10 s) and prints
// it: as JSON with --json, else as text does.
func showLocal[T any](cmd *cobra.Command, asJSON bool, fetch func(context.Context) (T, error), text func(io.Writer, T) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := fetch(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(cmd.OutOrStdout(), v)
	}
	return text(cmd.OutOrStdout(), v)
}

// pingCommand is `x0t ping NODE`: echoes through the tunnel on the path
// traffic takes and on the routing table's alternate, with the relays each
// went through.
func pingCommand(client func() *localapi.Client, asJSON *bool) *cobra.Command {
	var count int
	var interval, timeout time.Duration
	var paths string
	cmd := &cobra.Command{
		Use:   "ping NODE",
		Short: "Ping a node through the mesh: RTT per path and the relays on it",
		Long: "Sends ICMP echoes from this node's overlay address to NODE (a name, overlay address or node ID),\n" +
			"on the path traffic takes now and, where the routing table has one, on the loop-free alternate,\n" +
			"and prints each reply's round-trip time and the relay it went through. Exits 1 if no echo on\n" +
			"the route came back.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 1 || interval < 0 || timeout <= 0 || timeout > localapi.MaxPingTimeout {
				return fmt.Errorf("need --count >= 1, --interval >= 0 and 0 < --timeout <= %v", localapi.MaxPingTimeout)
			}
			var want []string
			switch paths {
			case "both":
				want = []string{node.PathRoute, node.PathAlternate}
			case node.PathRoute, node.PathAlternate:
				want = []string{paths}
			default:
				return fmt.Errorf("--path must be route, alternate or both, not %q", paths)
			}
			c := client()
			w := cmd.OutOrStdout()
			type tally struct {
				sent, got     int
				min, max, sum time.Duration
			}
			stats := map[string]*tally{}
			var all []*node.PingResult
			for seq := 1; seq <= count; seq++ {
				if seq > 1 {
					time.Sleep(interval)
				}
				for _, path := range want {
					ctx, cancel := context.WithTimeout(cmd.Context(), timeout+5*time.Second)
					res, err := c.Ping(ctx, args[0], path, uint16(seq), timeout)
					cancel()
					if err != nil {
						if path == node.PathAlternate && errors.Is(err, node.ErrNoAlternate) {
							if seq == 1 && !*asJSON {
								fmt.Fprintf(w, "no alternate path to %s\n", args[0])
							}
							want = want[:1]
							continue
						}
						return err
					}
					all = append(all, res)
					t := stats[path]
					if t == nil {
						t = &tally{min: time.Hour}
						stats[path] = t
					}
					t.sent++
					label := res.Path
					if path == node.PathAlternate {
						label = "alternate " + res.Path
					}
					if res.Err != "" {
						if !*asJSON {
							fmt.Fprintf(w, "no reply from %s (%s) %s: seq=%d: %s\n", res.Peer, res.Addr, label, seq, res.Err)
						}
						continue
					}
					t.got++
					t.sum += res.RTT
					t.min, t.max = min(t.min, res.RTT), max(t.max, res.RTT)
					if !*asJSON {
						fmt.Fprintf(w, "pong from %s (%s) %s, %d hop(s), to %s: seq=%d time=%.3f ms\n", res.Peer, res.Addr,
							label, res.Hops, res.Endpoint, seq, ms(res.RTT))
					}
				}
			}
			if *asJSON {
				if err := printJSON(w, all); err != nil {
					return err
				}
			} else {
				for _, path := range want {
					if t := stats[path]; t != nil && t.got > 0 {
						fmt.Fprintf(w, "%s: %d/%d replies, rtt min/avg/max %.3f/%.3f/%.3f ms\n", path, t.got, t.sent,
							ms(t.min), ms(t.sum/time.Duration(t.got)), ms(t.max))
					} else if t != nil {
						fmt.Fprintf(w, "%s: 0/%d replies\n", path, t.sent)
					}
				}
			}
			if t := stats[want[0]]; t == nil || t.got == 0 {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&count, "count", "c", 3, "echoes per path")
	cmd.Flags().DurationVarP(&interval, "interval", "i", 200*time.Millisecond, "time between rounds")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "how long to wait for each reply")
	cmd.Flags().StringVar(&paths, "path", "both", "route, alternate or both")
	return cmd
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

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
