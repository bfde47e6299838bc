package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/x0tta6bl4/x0t/control"
)

// controlCmd is "x0t control serve": the control plane.
func controlCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{Use: "control", Short: "The control plane (Mesh-as-a-Service)"}
	var cfg control.Config
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve the control plane API over TLS until SIGINT or SIGTERM",
		Long: `Serve the control plane: the REST API under /api/v1 (OpenAPI document at
/api/v1/openapi.json), enrollment and the signed netmap streams, with its state
in an SQLite database in --data.

Without --tls-cert/--tls-key, a self-signed certificate for the listen address
and every --tls-san is made on first start and kept in DATA/tls.crt; clients
trust it with SSL_CERT_FILE=DATA/tls.crt or pin it with --control-fingerprint
(its SHA-256 is logged at start). On first start with an empty --data, the
first organization and an owner API key are created; the key is written to
DATA/admin.key.

Prometheus metrics are served on --metrics-listen (plain HTTP, meant for a
management network). Traces are exported by OTLP/HTTP when
OTEL_EXPORTER_OTLP_ENDPOINT is set (the standard OTEL_* variables apply);
without it tracing is off.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger("")
			if err != nil {
				return err
			}
			cfg.Logger = log
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv, err := control.New(ctx, cfg)
			if err != nil {
				return err
			}
			return srv.Run(ctx)
		},
	}
	f := serve.Flags()
	f.StringVar(&cfg.Listen, "listen", ":8443", "address to serve HTTPS on")
	f.StringVar(&cfg.DataDir, "data", "", "data directory: database, keys, TLS certificate (required)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate (PEM); default: a self-signed one in --data")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key (PEM)")
	f.StringArrayVar(&cfg.TLSSANs, "tls-san", nil, "extra DNS name or IP of a generated certificate (repeatable)")
	f.StringVar(&cfg.OrgName, "org", "default", "name of the first organization, made on first start")
	f.DurationVar(&cfg.CheckpointInterval, "checkpoint-interval", 10*time.Minute, "how often the audit chains get signed checkpoints")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "serve Prometheus /metrics over plain HTTP on this address (e.g. 127.0.0.1:9090); off when empty")
	serve.MarkFlagRequired("data")
	c.AddCommand(serve)
	return c
}
