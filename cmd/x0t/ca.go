package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/x0tta6bl4/x0t/identity"
)

func caCmd() *cobra.Command {
	ca := &cobra.Command{Use: "ca", Short: "Offline certificate authority for static meshes"}
	var name, out, trustDomain string
	var duration time.Duration
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a mesh CA: DIR/ca.crt and DIR/ca.key (hybrid Ed25519 + ML-DSA-65)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			crtPath, keyPath := filepath.Join(out, "ca.crt"), filepath.Join(out, "ca.key")
			if _, err := os.Stat(keyPath); err == nil {
				return fmt.Errorf("%s exists: refusing to overwrite a CA key", keyPath)
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			crt, key, err := identity.NewCA(name, trustDomain, duration, time.Now())
			if err != nil {
				return err
			}
			if err := identity.WriteFile(keyPath, identity.EncodePEM(identity.PEMCAKey, identity.MarshalCAKey(key)), 0o600); err != nil {
				return err
			}
			if err := identity.WriteFile(crtPath, identity.EncodePEM(identity.PEMCertificate, crt.Bytes()), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CA %q created: %s, %s\n%s\n", name, crtPath, keyPath, crt.SPIFFEID())
			return nil
		},
	}
	initCmd.Flags().StringVar(&name, "name", "", "mesh name (lowercase letters, digits, '-')")
	initCmd.Flags().StringVar(&out, "out", ".", "directory for ca.crt and ca.key")
	initCmd.Flags().StringVar(&trustDomain, "trust-domain", identity.DefaultTrustDomain, "SPIFFE trust domain")
	initCmd.Flags().DurationVar(&duration, "duration", 10*365*24*time.Hour, "validity of the CA certificate")
	initCmd.MarkFlagRequired("name")
	ca.AddCommand(initCmd)
	return ca
}
