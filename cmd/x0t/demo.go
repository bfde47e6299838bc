package main

import "github.com/spf13/cobra"

func demoCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Run several netstack nodes in one process and show traffic between them",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errNotYet
		},
	}
}
