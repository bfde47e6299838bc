package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
)

func adminOrgCmd(a *adminFlags) *cobra.Command {
	c := &cobra.Command{Use: "org", Short: "Organizations (tenants)"}
	show := &cobra.Command{
		Use: "show", Short: "Show the caller's organization, user and role", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, _ []string) error {
			me, err := cl.Whoami(ctx)
			if err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), me, func(w *tabwriter.Writer) {
				row(w, "organization:", me.Org.Name+" ("+me.Org.ID+")")
				row(w, "operator:", me.Org.Operator)
				row(w, "user:", me.User.Name+" ("+me.User.ID+")")
				row(w, "key:", me.Key.Name+" ("+me.Key.ID+", "+me.Key.Prefix+"…)")
				row(w, "role:", me.Role)
			})
		}),
	}
	list := &cobra.Command{
		Use: "list", Short: "List organizations (operator only)", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, _ []string) error {
			orgs, err := cl.ListOrgs(ctx)
			if err != nil {
				return err
			}
			if orgs == nil {
				orgs = []apitypes.Org{}
			}
			return a.output(cmd.OutOrStdout(), orgs, func(w *tabwriter.Writer) {
				row(w, "NAME", "ID", "OPERATOR", "CREATED")
				for _, o := range orgs {
					row(w, o.Name, o.ID, o.Operator, ago(&o.CreatedAt))
				}
			})
		}),
	}
	var req apitypes.CreateOrgRequest
	create := &cobra.Command{
		Use: "create NAME", Short: "Create an organization and print its owner's API key (operator only)", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			res, err := cl.CreateOrg(ctx, req)
			if err != nil {
				return err
			}
			if a.json {
				return a.output(cmd.OutOrStdout(), res, nil)
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.Key.Key)
			return nil
		}),
	}
	create.Flags().StringVar(&req.Owner, "owner", "", "name of the first owner (default owner)")
	create.Flags().StringVar(&req.Email, "email", "", "email of the first owner")
	del := &cobra.Command{
		Use: "delete ORG-ID", Short: "Delete an organization and everything in it (operator owners only)", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, args []string) error {
			if err := cl.DeleteOrg(ctx, args[0]); err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), map[string]string{"deleted": args[0]}, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "organization %s deleted\n", args[0])
			})
		}),
	}
	c.AddCommand(show, list, create, del)
	return c
}

func adminUsersCmd(a *adminFlags) *cobra.Command {
	c := &cobra.Command{Use: "users", Short: "Users of the organization"}
	list := &cobra.Command{
		Use: "list", Short: "List users", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, _ []string) error {
			users, err := cl.ListUsers(ctx)
			if err != nil {
				return err
			}
			if users == nil {
				users = []apitypes.User{}
			}
			return a.output(cmd.OutOrStdout(), users, func(w *tabwriter.Writer) {
				row(w, "NAME", "ID", "ROLE", "EMAIL", "CREATED")
				for _, u := range users {
					row(w, u.Name, u.ID, u.Role, orDash(u.Email), ago(&u.CreatedAt))
				}
			})
		}),
	}
	var req apitypes.CreateUserRequest
	create := &cobra.Command{
		Use: "create NAME", Short: "Add a user", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			u, err := cl.CreateUser(ctx, req)
			if err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), u, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "user %s (%s) created with role %s\n", u.Name, u.ID, u.Role)
			})
		}),
	}
	create.Flags().StringVar(&req.Role, "role", "member", "owner, admin, member or viewer")
	create.Flags().StringVar(&req.Email, "email", "", "email")
	del := &cobra.Command{
		Use: "delete USER-ID", Short: "Delete a user and their API keys", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, args []string) error {
			if err := cl.DeleteUser(ctx, args[0]); err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), map[string]string{"deleted": args[0]}, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "user %s deleted\n", args[0])
			})
		}),
	}
	c.AddCommand(list, create, del)
	return c
}

func adminKeysCmd(a *adminFlags) *cobra.Command {
	c := &cobra.Command{Use: "keys", Short: "API keys of the organization"}
	list := &cobra.Command{
		Use: "list", Short: "List API keys (never their secrets)", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, _ []string) error {
			keys, err := cl.ListKeys(ctx)
			if err != nil {
				return err
			}
			if keys == nil {
				keys = []apitypes.APIKey{}
			}
			return a.output(cmd.OutOrStdout(), keys, func(w *tabwriter.Writer) {
				row(w, "NAME", "ID", "PREFIX", "ROLE", "USER", "EXPIRES", "CREATED")
				for _, k := range keys {
					row(w, k.Name, k.ID, k.Prefix+"…", k.Role, k.UserID, ago(k.ExpiresAt), ago(&k.CreatedAt))
				}
			})
		}),
	}
	var req apitypes.CreateKeyRequest
	create := &cobra.Command{
		Use: "create NAME", Short: "Create an API key and print it (it is shown only once)", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			k, err := cl.CreateKey(ctx, req)
			if err != nil {
				return err
			}
			if a.json {
				return a.output(cmd.OutOrStdout(), k, nil)
			}
			fmt.Fprintln(cmd.OutOrStdout(), k.Key)
			return nil
		}),
	}
	create.Flags().StringVar(&req.Role, "role", "viewer", "owner, admin, member or viewer (at most the caller's)")
	create.Flags().StringVar(&req.UserID, "user", "", "user ID the key acts for (default: the caller's user)")
	create.Flags().StringVar(&req.TTL, "ttl", "", "lifetime (e.g. 720h); default: no expiry")
	del := &cobra.Command{
		Use: "delete KEY-ID", Short: "Delete an API key", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, cl *controlclient.Client, cmd *cobra.Command, args []string) error {
			if err := cl.DeleteKey(ctx, args[0]); err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), map[string]string{"deleted": args[0]}, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "API key %s deleted\n", args[0])
			})
		}),
	}
	c.AddCommand(list, create, del)
	return c
}
