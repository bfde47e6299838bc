package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
)

func adminACLCmd(a *adminFlags) *cobra.Command {
	c := &cobra.Command{Use: "acl", Short: "ACL policy of a mesh (see docs/policy.md)"}
	var mesh string
	c.PersistentFlags().StringVar(&mesh, "mesh", "", "mesh name (required)")
	c.MarkPersistentFlagRequired("mesh")

	get := &cobra.Command{
		Use: "get", Short: "Print the mesh's policy", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, _ []string) error {
			pol, _, err := cl.GetACL(ctx, mesh)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := json.Indent(&buf, pol, "", "  "); err != nil {
				return err
			}
			buf.WriteByte('\n')
			_, err = cmd.OutOrStdout().Write(buf.Bytes())
			return err
		}),
	}
	var file string
	set := &cobra.Command{
		Use: "set", Short: "Replace the mesh's policy (from --file or standard input); refused unless its tests pass", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, _ []string) error {
			pol, err := readInput(cmd, file)
			if err != nil {
				return err
			}
			if _, _, err := cl.SetACL(ctx, mesh, pol, ""); err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), map[string]string{"mesh": mesh, "policy": "set"}, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "policy of mesh %s set\n", mesh)
			})
		}),
	}
	set.Flags().StringVarP(&file, "file", "f", "", "policy file (JSON); default or '-': standard input")

	validate := &cobra.Command{
		Use: "validate", Short: "Check a policy against the mesh's nodes without setting it", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, _ []string) error {
			pol, err := readInput(cmd, file)
			if err != nil {
				return err
			}
			res, err := cl.ValidateACL(ctx, mesh, pol)
			if err != nil {
				return err
			}
			if err := a.output(cmd.OutOrStdout(), res, func(w *tabwriter.Writer) { testTable(w, res.Results) }); err != nil {
				return err
			}
			if !res.Valid {
				return fmt.Errorf("policy refused: %s", oneLine(res.Error))
			}
			return nil
		}),
	}
	validate.Flags().StringVarP(&file, "file", "f", "", "policy file (JSON); default or '-': standard input")

	var req apitypes.ACLTestRequest
	var want string
	test := &cobra.Command{
		Use:   "test",
		Short: "Run the policy's embedded tests, or check one packet with --src and --dst",
		Long: `Run the embedded tests of the mesh's policy (or of --file), exiting non-zero if
any fails; or, with --src and --dst (node names, IDs or overlay addresses),
print whether the policy accepts one packet (with --want, exit non-zero if
the answer differs).`,
		Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, _ []string) error {
			if file != "" {
				pol, err := readInput(cmd, file)
				if err != nil {
					return err
				}
				req.Policy = pol
			}
			res, err := cl.TestACL(ctx, mesh, req)
			if err != nil {
				return err
			}
			single := req.Src != "" || req.Dst != ""
			err = a.output(cmd.OutOrStdout(), res, func(w *tabwriter.Writer) {
				if single {
					r := res.Results[0]
					fmt.Fprintf(w, "%s\n", r.Got)
					return
				}
				testTable(w, res.Results)
			})
			if err != nil {
				return err
			}
			if single {
				if want != "" && res.Results[0].Got != want {
					return fmt.Errorf("%s -> %s %s/%d: %s, want %s", req.Src, req.Dst, res.Results[0].Proto, req.Port, res.Results[0].Got, want)
				}
				return nil
			}
			failed := 0
			for _, r := range res.Results {
				if !r.Pass {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d policy tests failed", failed, len(res.Results))
			}
			return nil
		}),
	}
	test.Flags().StringVarP(&file, "file", "f", "", "test this policy file instead of the mesh's")
	test.Flags().StringVar(&req.Src, "src", "", "source node (name, ID or overlay address)")
	test.Flags().StringVar(&req.Dst, "dst", "", "destination node (name, ID or overlay address)")
	test.Flags().StringVar(&req.Proto, "proto", "tcp", "protocol: tcp, udp, icmp, sctp or a number")
	test.Flags().Uint16Var(&req.Port, "port", 0, "destination port")
	test.Flags().StringVar(&want, "want", "", "with --src/--dst: accept or deny; exit non-zero if the policy says otherwise")
	c.AddCommand(get, set, validate, test)
	return c
}

func testTable(w *tabwriter.Writer, results []apitypes.ACLTestResult) {
	row(w, "SRC", "DST", "PROTO", "PORT", "WANT", "GOT", "RESULT")
	for _, r := range results {
		res := "pass"
		if !r.Pass {
			res = "FAIL"
			if r.Error != "" {
				res += ": " + r.Error
			}
		}
		row(w, r.Src, r.Dst, orDash(r.Proto), r.Port, orDash(r.Want), orDash(r.Got), res)
	}
	if len(results) == 0 {
		fmt.Fprintln(w, "(the policy has no tests)")
	}
}

func adminAuditCmd(a *adminFlags) *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "The organization's audit log"}
	var limit int
	var before uint64
	list := &cobra.Command{
		Use: "list", Short: "List audit log entries, newest first", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, _ []string) error {
			page, err := cl.ListAudit(ctx, before, limit)
			if err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), page, func(w *tabwriter.Writer) {
				row(w, "SEQ", "TIME", "ACTOR", "ACTION", "TARGET")
				for _, e := range page.Events {
					row(w, e.Seq, e.Time.Local().Format("2006-01-02 15:04:05"), e.Actor, e.Action, e.Kind+"/"+e.Target)
				}
				if page.Next != 0 {
					fmt.Fprintf(w, "(more: --before %d)\n", page.Next)
				}
			})
		}),
	}
	list.Flags().IntVar(&limit, "limit", 50, "entries per page (1-1000)")
	list.Flags().Uint64Var(&before, "before", 0, "only entries before this sequence number")

	verify := &cobra.Command{
		Use: "verify", Short: "Verify the hash chain and signed checkpoints; name the first broken entry", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, _ []string) error {
			rep, err := cl.VerifyAudit(ctx)
			if err != nil {
				return err
			}
			err = a.output(cmd.OutOrStdout(), rep, func(w *tabwriter.Writer) {
				if rep.OK {
					fmt.Fprintf(w, "audit log verified: %d entries, head %d, %d signed checkpoints\n", rep.Events, rep.Head, rep.Checkpoints)
				}
			})
			if err != nil {
				return err
			}
			if !rep.OK {
				b := rep.Broken
				if b == nil {
					return errors.New("audit log does not verify")
				}
				what := ""
				if b.Action != "" {
					what = fmt.Sprintf(" (%s %s)", b.Action, b.Target)
				}
				return fmt.Errorf("audit log does not verify: entry %d%s: %s", b.Seq, what, b.Reason)
			}
			return nil
		}),
	}
	checkpoint := &cobra.Command{
		Use: "checkpoint", Short: "Sign a checkpoint of the audit chain now (keep a copy elsewhere)", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, _ []string) error {
			cp, err := cl.CreateCheckpoint(ctx)
			if err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), cp, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "checkpoint at entry %d: %s\n", cp.Seq, cp.Hash)
			})
		}),
	}
	c.AddCommand(list, verify, checkpoint)
	return c
}

// oneLine keeps the first line of a message.
func oneLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}
