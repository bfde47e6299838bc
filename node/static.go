package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/x0tta6bl4/x0t/config"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/transport"
)

// Static is a node assembled from a static config file: its identity files,
// its device and its socket. Close undoes everything Open set up.
type Static struct {
	Node  *Node
	Cert  *identity.Certificate
	TUN   *overlay.TUN      // kernel device, or nil
	Stack *overlay.Netstack // userspace stack, or nil
	Conn  *transport.UDPConn
}

// OpenStatic loads the identity files named by c, verifies them, and creates the
// overlay device and the underlay socket.
func OpenStatic(c *config.Node, logger *slog.Logger) (*Static, error) {
	now := time.Now()
	ca, err := identity.ReadCertificate(c.CA)
	if err != nil {
		return nil, err
	}
	trust, err := identity.NewTrust(ca, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.CA, err)
	}
	cert, err := identity.ReadCertificate(c.Cert)
	if err != nil {
		return nil, err
	}
	if err := trust.Verify(cert, now); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Cert, err)
	}
	key, err := identity.ReadNodeKey(c.Key)
	if err != nil {
		return nil, err
	}
	if key.PublicKeys().ID() != cert.ID() {
		return nil, fmt.Errorf("%s does not hold the keys of %s", c.Key, c.Cert)
	}
	var peers []PeerConfig
	for _, pc := range c.Peers {
		pcert, err := identity.ReadCertificate(pc.Cert)
		if err != nil {
			return nil, err
		}
		if err := trust.Verify(pcert, now); err != nil {
			return nil, fmt.Errorf("peer %s: %w", pc.Cert, err)
		}
		peers = append(peers, PeerConfig{Cert: pcert, Endpoints: pc.EndpointAddrs})
	}

	s := &Static{Cert: cert}
	var dev overlay.Device
	if c.Netstack {
		var addrs []netip.Addr
		for _, p := range cert.Addrs {
			addrs = append(addrs, p.Addr())
		}
		if s.Stack, err = overlay.NewNetstack(addrs, c.MTU); err != nil {
			return nil, err
		}
		dev = s.Stack.Device()
	} else {
		if s.TUN, err = overlay.CreateTUN(overlay.TUNConfig{Name: c.TUN, MTU: c.MTU, Addrs: cert.Addrs}); err != nil {
			return nil, err
		}
		dev = s.TUN.Device()
	}
	if s.Conn, err = transport.ListenUDP(c.ListenAddr); err != nil {
		s.Close()
		return nil, err
	}
	keepalive := time.Duration(c.Keepalive)
	if keepalive < 0 {
		keepalive = 0
	}
	s.Node, err = New(Config{
		Key: key, Cert: cert, Trust: trust, Device: dev, Conn: s.Conn,
		Peers: peers, Keepalive: keepalive, BusyPoll: time.Duration(c.BusyPoll), Logger: logger,
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Run runs the node until ctx ends, then tears everything down.
func (s *Static) Run(ctx context.Context) error {
	err := s.Node.Run(ctx)
	if cerr := s.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	s.Node.Wait()
	return err
}

// Close closes the socket and removes the device and everything configured on it.
func (s *Static) Close() error {
	var errs []error
	if s.Conn != nil {
		errs = append(errs, s.Conn.Close())
	}
	if s.TUN != nil {
		errs = append(errs, s.TUN.Close())
	}
	if s.Stack != nil {
		errs = append(errs, s.Stack.Close())
	}
	return errors.Join(errs...)
}
