package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
)

func adminMeshCmd(a *adminFlags) *cobra.Command {
	m := &cobra.Command{Use: "mesh", Short: "Meshes of the control plane"}
	var req apitypes.CreateMeshRequest
	var transports string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a mesh (with its own hybrid CA)", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, c *controlclient.Client, cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			req.Transports = splitList(transports)
			mesh, err := c.CreateMesh(ctx, req)
			if err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), mesh, func(w *tabwriter.Writer) { meshTable(w, *mesh) })
		}),
	}
	create.Flags().StringVar(&req.IPv4Prefix, "prefix", "", "overlay IPv4 prefix (default 100.64.0.0/10)")
	create.Flags().StringVar(&req.Description, "description", "", "description")
	create.Flags().StringVar(&transports, "transports", "", "allowed transports: udp,tcp-tls,websocket (default udp)")
	create.Flags().StringVar(&req.CertValidity, "cert-validity", "", "node certificate lifetime (default 720h)")
	create.Flags().StringVar(&req.TrustDomain, "trust-domain", "", "SPIFFE trust domain (default x0t.mesh)")

	list := &cobra.Command{
		Use: "list", Short: "List meshes", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *controlclient.Client, cmd *cobra.Command, _ []string) error {
			meshes, err := c.ListMeshes(ctx)
			if err != nil {
				return err
			}
			if meshes == nil {
				meshes = []apitypes.Mesh{}
			}
			return a.output(cmd.OutOrStdout(), meshes, func(w *tabwriter.Writer) {
				row(w, "NAME", "IPV4", "IPV6", "NODES", "TRANSPORTS", "CA", "CREATED")
				for _, m := range meshes {
					row(w, m.Name, m.IPv4Prefix, m.IPv6Prefix, m.Nodes, joinOrDash(m.Transports), short(m.CAFingerprint, 16), ago(&m.CreatedAt))
				}
			})
		}),
	}
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a mesh", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, c *controlclient.Client, cmd *cobra.Command, args []string) error {
			mesh, err := c.GetMesh(ctx, args[0])
			if err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), mesh, func(w *tabwriter.Writer) { meshTable(w, *mesh) })
		}),
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a mesh with its nodes, tokens and policy", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, c *controlclient.Client, cmd *cobra.Command, args []string) error {
			if err := c.DeleteMesh(ctx, args[0]); err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), map[string]string{"deleted": args[0]}, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "mesh %s deleted\n", args[0])
			})
		}),
	}
	m.AddCommand(create, list, show, del)
	return m
}

func meshTable(w *tabwriter.Writer, m apitypes.Mesh) {
	row(w, "name:", m.Name)
	row(w, "id:", m.ID)
	if m.Description != "" {
		row(w, "description:", m.Description)
	}
	row(w, "ipv4 prefix:", m.IPv4Prefix)
	row(w, "ipv6 prefix:", m.IPv6Prefix)
	row(w, "pq profile:", m.PQProfile)
	row(w, "transports:", joinOrDash(m.Transports))
	row(w, "cert validity:", m.CertValidity)
	row(w, "trust domain:", m.TrustDomain)
	row(w, "ca fingerprint:", m.CAFingerprint)
	row(w, "nodes:", m.Nodes)
	row(w, "created:", m.CreatedAt.Local().Format("2006-01-02 15:04:05"))
}

func adminTokenCmd(a *adminFlags) *cobra.Command {
	t := &cobra.Command{Use: "token", Short: "Join tokens of a mesh"}
	var mesh string
	t.PersistentFlags().StringVar(&mesh, "mesh", "", "mesh name (required)")
	t.MarkPersistentFlagRequired("mesh")

	var req apitypes.CreateTokenRequest
	var tags string
	var uses int
	create := &cobra.Command{
		Use: "create", Short: "Create a join token and print it (it is shown only once)", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *controlclient.Client, cmd *cobra.Command, _ []string) error {
			req.Tags = splitList(tags)
			req.MaxUses = &uses
			tok, err := c.CreateToken(ctx, mesh, req)
			if err != nil {
				return err
			}
			if a.json {
				return a.output(cmd.OutOrStdout(), tok, nil)
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok.Secret)
			return nil
		}),
	}
	create.Flags().BoolVar(&req.AutoApprove, "auto-approve", false, "approve nodes that enroll with it at once")
	create.Flags().StringVar(&tags, "tags", "", "tags for the nodes that enroll with it (a,b)")
	create.Flags().StringVar(&req.TTL, "ttl", "24h", "lifetime")
	create.Flags().IntVar(&uses, "uses", 1, "how many nodes may enroll with it (0: unlimited)")
	create.Flags().StringVar(&req.Description, "description", "", "description")

	list := &cobra.Command{
		Use: "list", Short: "List join tokens (never their secrets)", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *controlclient.Client, cmd *cobra.Command, _ []string) error {
			toks, err := c.ListTokens(ctx, mesh)
			if err != nil {
				return err
			}
			if toks == nil {
				toks = []apitypes.Token{}
			}
			return a.output(cmd.OutOrStdout(), toks, func(w *tabwriter.Writer) {
				row(w, "ID", "PREFIX", "USES", "AUTO-APPROVE", "TAGS", "EXPIRES", "STATE", "DESCRIPTION")
				for _, t := range toks {
					uses := fmt.Sprintf("%d/%d", t.Uses, t.MaxUses)
					if t.MaxUses == 0 {
						uses = fmt.Sprintf("%d/∞", t.Uses)
					}
					state := "valid"
					switch {
					case t.RevokedAt != nil:
						state = "revoked"
					case !t.Valid:
						state = "spent"
					}
					row(w, t.ID, t.Prefix+"…", uses, t.AutoApprove, joinOrDash(t.Tags), ago(&t.ExpiresAt), state, orDash(t.Description))
				}
			})
		}),
	}
	revoke := &cobra.Command{
		Use: "revoke TOKEN", Short: "Revoke a join token, named by its ID, the token itself or its shown prefix", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, c *controlclient.Client, cmd *cobra.Command, args []string) error {
			id, err := tokenID(ctx, c, mesh, args[0])
			if err != nil {
				return err
			}
			tok, err := c.RevokeToken(ctx, mesh, id)
			if err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), tok, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "token %s revoked\n", tok.ID)
			})
		}),
	}
	t.AddCommand(create, list, revoke)
	return t
}

// tokenID resolves a token given as its secret or its shown prefix to its
// ID (only a hash of the secret is stored, so the prefix is matched).
func tokenID(ctx context.Context, c *controlclient.Client, mesh, ref string) (string, error) {
	if !strings.HasPrefix(ref, "x0t_join_") {
		return ref, nil
	}
	toks, err := c.ListTokens(ctx, mesh)
	if err != nil {
		return "", err
	}
	var found []string
	for _, t := range toks {
		if strings.HasPrefix(ref, t.Prefix) || strings.HasPrefix(t.Prefix, ref) {
			found = append(found, t.ID)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no join token of mesh %s starts like %.15s", mesh, ref)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%d join tokens start like %.15s: name one by its ID", len(found), ref)
}

func adminNodesCmd(a *adminFlags) *cobra.Command {
	n := &cobra.Command{Use: "nodes", Short: "Nodes of a mesh"}
	var mesh string
	n.PersistentFlags().StringVar(&mesh, "mesh", "", "mesh name (required)")
	n.MarkPersistentFlagRequired("mesh")

	var status string
	list := &cobra.Command{
		Use: "list", Short: "List nodes", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *controlclient.Client, cmd *cobra.Command, _ []string) error {
			nodes, err := c.ListNodes(ctx, mesh, status)
			if err != nil {
				return err
			}
			if nodes == nil {
				nodes = []apitypes.Node{}
			}
			return a.output(cmd.OutOrStdout(), nodes, func(w *tabwriter.Writer) {
				row(w, "NAME", "ID", "STATUS", "IPV4", "IPV6", "TAGS", "ONLINE", "LAST SEEN", "ENDPOINTS")
				for _, n := range nodes {
					row(w, n.Name, short(n.ID, 12), n.Status, n.IPv4, orDash(n.IPv6), joinOrDash(n.Tags), n.Online, ago(n.LastSeen), joinOrDash(n.Endpoints))
				}
			})
		}),
	}
	list.Flags().StringVar(&status, "status", "", "only nodes in this state: pending, approved, revoked")

	one := func(use, short string, fn func(ctx context.Context, c *controlclient.Client, node string) (*apitypes.Node, error)) *cobra.Command {
		return &cobra.Command{
			Use: use + " NODE", Short: short, Args: cobra.ExactArgs(1),
			RunE: a.run(func(ctx context.Context, c *controlclient.Client, cmd *cobra.Command, args []string) error {
				node, err := fn(ctx, c, args[0])
				if err != nil {
					return err
				}
				return a.output(cmd.OutOrStdout(), node, func(w *tabwriter.Writer) { nodeTable(w, node) })
			}),
		}
	}
	show := one("show", "Show a node", func(ctx context.Context, c *controlclient.Client, node string) (*apitypes.Node, error) {
		return c.GetNode(ctx, mesh, node)
	})
	approve := one("approve", "Approve a pending node (issues its certificate)", func(ctx context.Context, c *controlclient.Client, node string) (*apitypes.Node, error) {
		return c.ApproveNode(ctx, mesh, node)
	})
	revoke := one("revoke", "Revoke a node: every peer refuses it within seconds", func(ctx context.Context, c *controlclient.Client, node string) (*apitypes.Node, error) {
		return c.RevokeNode(ctx, mesh, node)
	})
	var tags string
	tag := one("tag", "Replace a node's tags (reissues its certificate)", func(ctx context.Context, c *controlclient.Client, node string) (*apitypes.Node, error) {
		list := splitList(tags)
		if list == nil {
			list = []string{}
		}
		return c.UpdateNode(ctx, mesh, node, apitypes.UpdateNodeRequest{Tags: &list})
	})
	tag.Flags().StringVar(&tags, "tags", "", "the node's tags, a,b (empty: none)")
	tag.MarkFlagRequired("tags")
	rename := &cobra.Command{
		Use: "rename NODE NEW-NAME", Short: "Rename a node (reissues its certificate)", Args: cobra.ExactArgs(2),
		RunE: a.run(func(ctx context.Context, c *controlclient.Client, cmd *cobra.Command, args []string) error {
			node, err := c.UpdateNode(ctx, mesh, args[0], apitypes.UpdateNodeRequest{Name: &args[1]})
			if err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), node, func(w *tabwriter.Writer) { nodeTable(w, node) })
		}),
	}
	del := &cobra.Command{
		Use: "delete NODE", Short: "Delete a node (it stays revoked until its certificate expires)", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, c *controlclient.Client, cmd *cobra.Command, args []string) error {
			if err := c.DeleteNode(ctx, mesh, args[0]); err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), map[string]string{"deleted": args[0]}, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "node %s deleted\n", args[0])
			})
		}),
	}
	n.AddCommand(list, show, approve, revoke, tag, rename, del)
	return n
}

func nodeTable(w *tabwriter.Writer, n *apitypes.Node) {
	row(w, "name:", n.Name)
	row(w, "id:", n.ID)
	row(w, "mesh:", n.Mesh)
	row(w, "status:", n.Status)
	row(w, "addresses:", strings.TrimSpace(n.IPv4+" "+n.IPv6))
	row(w, "tags:", joinOrDash(n.Tags))
	row(w, "endpoints:", joinOrDash(n.Endpoints))
	row(w, "online:", n.Online)
	row(w, "last seen:", ago(n.LastSeen))
	if n.Health != "" {
		row(w, "health:", n.Health)
	}
	row(w, "certificate until:", ago(n.CertNotAfter))
	row(w, "traffic:", fmt.Sprintf("rx %d B, tx %d B", n.RxBytes, n.TxBytes))
}
