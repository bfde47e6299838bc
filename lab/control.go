package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/x0tta6bl4/x0t/agent"
	"github.com/x0tta6bl4/x0t/control"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
	"github.com/x0tta6bl4/x0t/transport"
)

// ControlPlane is a real control plane (TLS, SQLite, the full API) running
// inside the process on 127.0.0.1, for the demo and tests that enroll nodes the
// way production does.
type ControlPlane struct {
	Server      *control.Server
	URL         string
	Fingerprint string
	Admin       *controlclient.Client
	dir         string
	logger      *slog.Logger
	cancel      context.CancelFunc
	done        chan error
	cuts        *cutSet
}

// StartControlPlane starts a control plane whose data lives in dir.
func StartControlPlane(ctx context.Context, dir string, logger *slog.Logger) (*ControlPlane, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	data := filepath.Join(dir, "control")
	srv, err := control.New(ctx, control.Config{Listen: "127.0.0.1:0", DataDir: data, Logger: logger, Debounce: 20 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	ln, err := srv.Listen()
	if err != nil {
		srv.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	cp := &ControlPlane{Server: srv, URL: "https://" + ln.Addr().String(), Fingerprint: srv.CertFingerprint(),
		dir: dir, logger: logger, cancel: cancel, done: make(chan error, 1),
		cuts: &cutSet{cut: map[[2]netip.AddrPort]bool{}, loss: map[[2]netip.AddrPort]float64{}}}
	go func() { cp.done <- srv.Serve(ctx, ln) }()
	key, err := os.ReadFile(filepath.Join(data, "admin.key"))
	if err != nil {
		cp.Close()
		return nil, fmt.Errorf("lab: admin key: %w", err)
	}
	cp.Admin, err = controlclient.New(cp.URL, controlclient.Options{APIKey: strings.TrimSpace(string(key)), Fingerprint: cp.Fingerprint})
	if err != nil {
		cp.Close()
		return nil, err
	}
	return cp, nil
}

// Close stops the control plane.
func (cp *ControlPlane) Close() {
	cp.cancel()
	<-cp.done
	cp.Server.Close()
}

// NewMesh creates a mesh and an auto-approving join token for it.
func (cp *ControlPlane) NewMesh(ctx context.Context, name string) (token string, err error) {
	if _, err := cp.Admin.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: name}); err != nil {
		return "", err
	}
	unlimited := 0
	tok, err := cp.Admin.CreateToken(ctx, name, apitypes.CreateTokenRequest{AutoApprove: true, MaxUses: &unlimited, TTL: "1h"})
	if err != nil {
		return "", err
	}
	return tok.Secret, nil
}

// Join enrolls a new netstack node with the token, as `x0t node up --control
// URL --token T --state DIR --netstack` does, and runs it until Stop.
func (cp *ControlPlane) Join(ctx context.Context, token, name string) (*Node, error) {
	dir := filepath.Join(cp.dir, "nodes", name)
	st, err := agent.NewState(dir, cp.URL, cp.Fingerprint, name)
	if err != nil {
		return nil, err
	}
	client, err := controlclient.New(cp.URL, controlclient.Options{Fingerprint: cp.Fingerprint})
	if err != nil {
		return nil, err
	}
	nc := client.Node(st.Key)
	opt := agent.Options{Token: token, Netstack: true, Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: cp.logger,
		HeartbeatInterval: time.Second}
	opt.WrapConn = func(c transport.Conn) transport.Conn {
		return &cutConn{Conn: c, self: c.LocalAddr(), cuts: cp.cuts}
	}
	if err := agent.Enroll(ctx, nc, st, opt); err != nil {
		return nil, err
	}
	a, err := agent.New(st, nc, opt)
	if err != nil {
		return nil, err
	}
	n := &Node{Name: name, Key: st.Key, Cert: st.Cert, Stack: a.Netstack(), Node: a.Node(), Agent: a, Conn: a.Conn()}
	if err := n.serveEcho(); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.done = make(chan error, 1)
	go func() { n.done <- a.Run(runCtx) }()
	return n, nil
}

// Cut severs the direct link between two nodes that joined this control plane.
func (cp *ControlPlane) Cut(a, b *Node) { cp.cuts.set(a, b, true) }

// Mend restores a cut link.
func (cp *ControlPlane) Mend(a, b *Node) { cp.cuts.set(a, b, false) }

// WaitPeers waits until the node has sessions up with n peers.
func (n *Node) WaitPeers(ctx context.Context, want int) error {
	for {
		up := 0
		for _, p := range n.Node.Peers() {
			if p.Up {
				up++
			}
		}
		if up >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("lab: %s has %d of %d peers up", n.Name, up, want), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
