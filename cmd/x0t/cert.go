package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/x0tta6bl4/x0t/identity"
)

func certCmd() *cobra.Command {
	cert := &cobra.Command{Use: "cert", Short: "Node certificates"}
	cert.AddCommand(certSignCmd(), certShowCmd())
	return cert
}

func certSignCmd() *cobra.Command {
	var caDir, name, out string
	var ips, tags []string
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "sign",
		Short: "Generate a node's keys and sign its certificate: DIR/node.crt, DIR/node.key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := identity.ReadCertificate(filepath.Join(caDir, "ca.crt"))
			if err != nil {
				return err
			}
			caKey, err := identity.ReadCAKey(filepath.Join(caDir, "ca.key"))
			if err != nil {
				return err
			}
			var addrs []netip.Prefix
			for _, s := range ips {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return fmt.Errorf("--ip %q: want an address with the mesh prefix length, e.g. 100.64.0.5/10: %w", s, err)
				}
				addrs = append(addrs, p)
			}
			if len(addrs) == 0 {
				return errors.New("--ip is required")
			}
			keyPath, crtPath := filepath.Join(out, "node.key"), filepath.Join(out, "node.crt")
			if _, err := os.Stat(keyPath); err == nil {
				return fmt.Errorf("%s exists: refusing to overwrite a node key", keyPath)
			}
			key, err := identity.GenerateNodeKey()
			if err != nil {
				return err
			}
			crt, err := identity.IssueNode(ca, caKey, identity.NodeTemplate{
				Name: name, Addrs: addrs, Tags: tags, Validity: duration, Keys: key.PublicKeys(),
			}, time.Now())
			if err != nil {
				return err
			}
			kb, _ := key.MarshalBinary()
			if err := identity.WriteFile(keyPath, identity.EncodePEM(identity.PEMNodeKey, kb), 0o600); err != nil {
				return err
			}
			if err := identity.WriteFile(crtPath, identity.EncodePEM(identity.PEMCertificate, crt.Bytes()), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %q signed: %s, %s\n%s\n", name, crtPath, keyPath, crt.SPIFFEID())
			return nil
		},
	}
	cmd.Flags().StringVar(&caDir, "ca", "", "directory holding ca.crt and ca.key")
	cmd.Flags().StringVar(&name, "name", "", "node name (lowercase letters, digits, '-')")
	cmd.Flags().StringSliceVar(&ips, "ip", nil, "overlay address with the mesh prefix length, e.g. 100.64.0.5/10 (an IPv6 address is derived when none is given)")
	cmd.Flags().StringSliceVar(&tags, "tags", nil, "comma-separated tags")
	cmd.Flags().DurationVar(&duration, "duration", 8760*time.Hour, "validity (capped at the CA's)")
	cmd.Flags().StringVar(&out, "out", ".", "directory for node.crt and node.key")
	cmd.MarkFlagRequired("ca")
	cmd.MarkFlagRequired("name")
	return cmd
}

func certShowCmd() *cobra.Command {
	var asJSON bool
	var caPath string
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Print a certificate (and with --ca, verify it: both CA signatures and the validity period)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := identity.ReadCertificate(args[0])
			if err != nil {
				return err
			}
			if err := printCert(cmd.OutOrStdout(), c, asJSON); err != nil {
				return err
			}
			if caPath == "" {
				return nil
			}
			ca, err := identity.ReadCertificate(caPath)
			if err != nil {
				return err
			}
			if c.Kind == identity.KindCA {
				err = c.VerifySelfSigned(time.Now())
			} else {
				err = c.Verify(ca, time.Now())
			}
			if err != nil {
				return fmt.Errorf("certificate does not verify against %s: %w", caPath, err)
			}
			if !asJSON {
				fmt.Fprintf(cmd.OutOrStdout(), "Verified:     both signatures valid, within validity (CA %s)\n", caPath)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&caPath, "ca", "", "CA certificate to verify against (exit status 1 if it does not verify)")
	return cmd
}

type certView struct {
	Kind        string    `json:"kind"`
	Name        string    `json:"name"`
	SPIFFEID    string    `json:"spiffe_id"`
	NodeID      string    `json:"node_id,omitempty"`
	Mesh        string    `json:"mesh"`
	TrustDomain string    `json:"trust_domain"`
	Addrs       []string  `json:"addresses,omitempty"`
	Tags        []string  `json:"tags,omitempty"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Issuer      string    `json:"issuer"`
	Fingerprint string    `json:"fingerprint"`
	Keys        []string  `json:"keys"`
	Signature   string    `json:"signature"`
}

func printCert(w io.Writer, c *identity.Certificate, asJSON bool) error {
	v := certView{
		Kind: "node", Name: c.Name, SPIFFEID: c.SPIFFEID(), Mesh: c.Mesh, TrustDomain: c.TrustDomain,
		Tags: c.Tags, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		Issuer:      fmt.Sprintf("%x", c.Issuer),
		Fingerprint: fmt.Sprintf("%x", c.Fingerprint()),
		Signature:   fmt.Sprintf("Ed25519 (%d bytes) + ML-DSA-65 (%d bytes)", identity.Ed25519SigSize, identity.MLDSASigSize),
	}
	if c.Kind == identity.KindCA {
		v.Kind = "ca"
		v.Keys = []string{"Ed25519", "ML-DSA-65"}
	} else {
		v.NodeID = c.ID().String()
		v.Keys = []string{"X25519", "ML-KEM-768", "Ed25519", "ML-DSA-65"}
	}
	for _, a := range c.Addrs {
		v.Addrs = append(v.Addrs, a.String())
	}
	if asJSON {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(v)
	}
	fmt.Fprintf(w, "Kind:         %s\n", v.Kind)
	fmt.Fprintf(w, "Name:         %s\n", v.Name)
	fmt.Fprintf(w, "SPIFFE ID:    %s\n", v.SPIFFEID)
	if v.NodeID != "" {
		fmt.Fprintf(w, "Node ID:      %s\n", v.NodeID)
	}
	fmt.Fprintf(w, "Mesh:         %s (trust domain %s)\n", v.Mesh, v.TrustDomain)
	if len(v.Addrs) > 0 {
		fmt.Fprintf(w, "Addresses:    %s\n", strings.Join(v.Addrs, ", "))
	}
	if len(v.Tags) > 0 {
		fmt.Fprintf(w, "Tags:         %s\n", strings.Join(v.Tags, ", "))
	}
	fmt.Fprintf(w, "Valid:        %s to %s\n", v.NotBefore.Format(time.RFC3339), v.NotAfter.Format(time.RFC3339))
	fmt.Fprintf(w, "Keys:         %s\n", strings.Join(v.Keys, ", "))
	fmt.Fprintf(w, "Signature:    %s\n", v.Signature)
	fmt.Fprintf(w, "Issuer:       %s\n", v.Issuer)
	fmt.Fprintf(w, "Fingerprint:  %s\n", v.Fingerprint)
	return nil
}
