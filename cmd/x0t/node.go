package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/x0tta6bl4/x0t/agent"
	"github.com/x0tta6bl4/x0t/config"
	"github.com/x0tta6bl4/x0t/controlclient"
	"github.com/x0tta6bl4/x0t/internal/progress"
	"github.com/x0tta6bl4/x0t/localapi"
	"github.com/x0tta6bl4/x0t/node"
)

type nodeFlags struct {
	config      string
	debugListen string
	control     string
	fingerprint string
	token       string
	state       string
	name        string
	tun         string
	netstack    bool
	listen      string
	endpoints   []string
	mtu         int
	busyPoll    time.Duration
	socket      string
	socketGroup string
}

func nodeCmd(g *globalFlags) *cobra.Command {
	n := &cobra.Command{Use: "node", Short: "The node agent"}
	var f nodeFlags
	up := &cobra.Command{
		Use:   "up",
		Short: "Run the node agent in the foreground until SIGINT or SIGTERM",
		Long: `Run the node agent in the foreground until SIGINT or SIGTERM.

Static mode:   x0t node up --config FILE
Control plane: x0t node up --control URL --token TOKEN --state DIR [--name NAME] [--tun NAME | --netstack]
               (later runs: x0t node up --control URL --state DIR)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			switch {
			case f.config != "" && f.control != "":
				return errors.New("--config and --control: choose one")
			case f.config != "":
				return runStatic(ctx, g, &f)
			case f.control != "" || os.Getenv("X0T_CONTROL") != "":
				return runEnrolled(ctx, g, &f, cmd)
			}
			return errors.New("give --config FILE (static mode) or --control URL --state DIR (control plane)")
		},
	}
	fl := up.Flags()
	fl.StringVar(&f.config, "config", "", "static node configuration (YAML)")
	fl.StringVar(&f.debugListen, "debug-listen", "", "serve net/http/pprof and Prometheus /metrics on this address (e.g. 127.0.0.1:6060)")
	fl.StringVar(&f.control, "control", "", "control plane URL (env X0T_CONTROL)")
	fl.StringVar(&f.fingerprint, "control-fingerprint", "", "pin the control plane's TLS certificate by SHA-256 (env X0T_CONTROL_FINGERPRINT)")
	fl.StringVar(&f.token, "token", "", "join token (first run only; env X0T_TOKEN)")
	fl.StringVar(&f.state, "state", "", "directory for the node's keys and certificates (control plane mode)")
	fl.StringVar(&f.name, "name", "", "node name at enrollment (default: the host name)")
	fl.StringVar(&f.tun, "tun", "", "kernel TUN name (default x0t0)")
	fl.BoolVar(&f.netstack, "netstack", false, "userspace netstack instead of a kernel TUN (no root)")
	fl.StringVar(&f.listen, "listen", "0.0.0.0:4242", "UDP underlay address (control plane mode)")
	fl.StringSliceVar(&f.endpoints, "endpoint", nil, "address peers should use to reach this node (default: this host's addresses)")
	fl.IntVar(&f.mtu, "mtu", 0, "overlay MTU (default 1420)")
	fl.DurationVar(&f.busyPoll, "busy-poll", 0, "low-latency mode: after traffic, poll the TUN and socket without sleeping for this long (e.g. 10ms; up to 2 CPUs while polling; config key busy_poll)")
	fl.StringVar(&f.socket, "socket", "", "local API socket (default /run/x0t/x0t.sock; config key socket)")
	fl.StringVar(&f.socketGroup, "socket-group", "", "group allowed to use the local API (default: root only)")
	n.AddCommand(up)
	return n
}

func runStatic(ctx context.Context, g *globalFlags, f *nodeFlags) error {
	c, err := config.Load(f.config)
	if err != nil {
		return err
	}
	if f.busyPoll != 0 {
		c.BusyPoll = config.Duration(f.busyPoll)
	}
	log, err := g.logger(c.LogLevel)
	if err != nil {
		return err
	}
	// The debug listener comes up first (profiling a slow start helps); the
	// node's collector joins its registry once the node exists.
	reg := node.NewRegistry(nil)
	if f.debugListen != "" {
		if _, err := serveDebug(ctx, f.debugListen, reg, log); err != nil {
			return err
		}
	}
	s, err := node.OpenStatic(c, log)
	if err != nil {
		return err
	}
	reg.MustRegister(node.NewCollector(s.Node))
	info := func() localapi.Status {
		return localapi.Status{Name: s.Cert.Name, ID: s.Cert.ID().String(), Mesh: s.Cert.Mesh, Addrs: prefixStrings(s.Cert.Addrs),
			Listen: s.Conn.LocalAddr().String(), Suite: node.SuiteName(s.Node.Suite())}
	}
	defer startLocalAPI(firstOf(f.socket, c.Socket), firstOf(f.socketGroup, c.SocketGroup), s.Node, info, log)()
	err = s.Run(ctx)
	log.Info("node stopped")
	return err
}

func runEnrolled(ctx context.Context, g *globalFlags, f *nodeFlags, cmd *cobra.Command) error {
	log, err := g.logger("")
	if err != nil {
		return err
	}
	if f.state == "" {
		return errors.New("--state DIR is required with --control")
	}
	if f.netstack && f.tun != "" {
		return errors.New("--tun and --netstack: choose one")
	}
	listen, err := netip.ParseAddrPort(f.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	reg := node.NewRegistry(nil) // the node's collector joins once enrolled
	if f.debugListen != "" {
		if _, err := serveDebug(ctx, f.debugListen, reg, log); err != nil {
			return err
		}
	}
	url := firstOf(f.control, os.Getenv("X0T_CONTROL"))
	if !strings.Contains(url, "://") {
		url = "https://" + url
	}
	fingerprint := firstOf(f.fingerprint, os.Getenv("X0T_CONTROL_FINGERPRINT"))

	st, err := agent.LoadState(f.state)
	switch {
	case errors.Is(err, agent.ErrNoState):
		name := f.name
		if name == "" {
			if name, err = os.Hostname(); err != nil {
				return fmt.Errorf("--name not given and no host name: %w", err)
			}
			name = strings.ToLower(strings.SplitN(name, ".", 2)[0])
		}
		if st, err = agent.NewState(f.state, url, fingerprint, name); err != nil {
			return err
		}
		log.Info("generated node keys", "state", f.state, "node", name, "id", st.NodeID)
	case err != nil:
		return err
	default:
		if f.control != "" && st.Control != url {
			log.Warn("using a control plane other than the one this node enrolled with", "enrolled", st.Control, "now", url)
		}
		if fingerprint == "" {
			fingerprint = st.Fingerprint
		}
	}
	client, err := controlclient.New(url, controlclient.Options{Fingerprint: fingerprint, UserAgent: "x0t-node"})
	if err != nil {
		return err
	}
	nc := client.Node(st.Key)
	opt := agent.Options{
		Token: firstOf(f.token, os.Getenv("X0T_TOKEN")), Name: st.Name, TUN: f.tun, Netstack: f.netstack,
		MTU: f.mtu, BusyPoll: f.busyPoll, Listen: listen, Endpoints: f.endpoints, Logger: log,
	}
	// A spinner only on a terminal; the log says the same in pipes.
	if rep := progress.New(cmd.ErrOrStderr()); rep.Enabled() {
		opt.Progress = func(what string) func(error) { return rep.Start("%s", what).End }
	}
	if err := agent.Enroll(ctx, nc, st, opt); err != nil {
		return err
	}
	a, err := agent.New(st, nc, opt)
	if err != nil {
		return err
	}
	reg.MustRegister(node.NewCollector(a.Node()))
	log.Info("joined mesh", "mesh", st.CA.Mesh, "node", st.Cert.Name, "addrs", st.Cert.Addrs)
	info := func() localapi.Status {
		return localapi.Status{Name: st.Name, ID: st.NodeID, Mesh: st.CA.Mesh, Addrs: prefixStrings(st.Cert.Addrs),
			Listen: opt.Listen.String(), Suite: node.SuiteName(a.Node().Suite())}
	}
	defer startLocalAPI(f.socket, f.socketGroup, a.Node(), info, log)()
	err = a.Run(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("node stopped")
	return err
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Addr().String()
	}
	return out
}
