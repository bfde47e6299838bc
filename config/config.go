// Package config reads the static node configuration (YAML) used by
// `x0t node up --config FILE`. Parsing is strict: unknown keys, bad addresses
// and missing files are errors that name the offending key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds a config file (a config with thousands of peers is a few
// hundred KiB).
const MaxFileSize = 16 << 20

// Node is a static node configuration.
type Node struct {
	Listen      string   `yaml:"listen"`       // UDP underlay address, e.g. 192.0.2.1:4242
	CA          string   `yaml:"ca"`           // CA certificate file
	Cert        string   `yaml:"cert"`         // node certificate file
	Key         string   `yaml:"key"`          // node key file
	TUN         string   `yaml:"tun"`          // kernel TUN name (default x0t0)
	Netstack    bool     `yaml:"netstack"`     // userspace gVisor netstack instead of a TUN
	MTU         int      `yaml:"mtu"`          // overlay MTU (default 1420)
	Keepalive   Duration `yaml:"keepalive"`    // persistent keepalive interval (default 25s, 0 keeps the default, negative disables)
	BusyPoll    Duration `yaml:"busy_poll"`    // low-latency mode: poll without sleeping this long after traffic (default 0: off)
	LogLevel    string   `yaml:"log_level"`    // debug, info, warn, error
	Socket      string   `yaml:"socket"`       // local API socket (default /run/x0t/x0t.sock)
	SocketGroup string   `yaml:"socket_group"` // group allowed to use the local API (default: root only)
	Peers       []Peer   `yaml:"peers"`

	// ListenAddr is Listen parsed.
	ListenAddr netip.AddrPort `yaml:"-"`
}

// Peer is one configured peer.
type Peer struct {
	Cert      string   `yaml:"cert"`
	Endpoints []string `yaml:"endpoints"` // UDP addresses; none means reached through the mesh

	EndpointAddrs []netip.AddrPort `yaml:"-"`
}

// Duration is a time.Duration written as "25s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: duration: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// Defaults.
const (
	DefaultTUN       = "x0t0"
	DefaultMTU       = 1420
	DefaultKeepalive = 25 * time.Second
	MinMTU           = 1280
	MaxMTU           = 9000

	// MaxBusyPoll bounds busy_poll: a longer window only burns CPU between
	// packets a second apart, where a thread wakeup costs nothing noticeable.
	MaxBusyPoll = time.Second
)

// Parse decodes and validates a config. Relative file paths are taken relative
// to baseDir (the config file's directory).
func Parse(data []byte, baseDir string) (*Node, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config: %d bytes, at most %d", len(data), MaxFileSize)
	}
	var c Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config: empty")
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.validate(baseDir); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load reads and parses a config file.
func Load(path string) (*Node, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func (c *Node) validate(baseDir string) error {
	var err error
	if c.Listen == "" {
		return errors.New("config: listen: required (UDP address, e.g. 192.0.2.1:4242)")
	}
	if c.ListenAddr, err = netip.ParseAddrPort(c.Listen); err != nil {
		return fmt.Errorf("config: listen: %w", err)
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"ca", &c.CA}, {"cert", &c.Cert}, {"key", &c.Key}} {
		if *f.v == "" {
			return fmt.Errorf("config: %s: required", f.name)
		}
		*f.v = resolve(baseDir, *f.v)
	}
	if c.Netstack && c.TUN != "" {
		return errors.New("config: tun and netstack: choose one")
	}
	if !c.Netstack && c.TUN == "" {
		c.TUN = DefaultTUN
	}
	if len(c.TUN) > 15 {
		return fmt.Errorf("config: tun: name %q longer than 15 bytes", c.TUN)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < MinMTU || c.MTU > MaxMTU {
		return fmt.Errorf("config: mtu: %d outside %d..%d", c.MTU, MinMTU, MaxMTU)
	}
	switch {
	case c.Keepalive == 0:
		c.Keepalive = Duration(DefaultKeepalive)
	case c.Keepalive > 0 && time.Duration(c.Keepalive) < time.Second:
		return fmt.Errorf("config: keepalive: %s is below 1s", time.Duration(c.Keepalive))
	}
	if c.BusyPoll < 0 || time.Duration(c.BusyPoll) > MaxBusyPoll {
		return fmt.Errorf("config: busy_poll: %s outside 0..%s", time.Duration(c.BusyPoll), MaxBusyPoll)
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log_level: %q: want debug, info, warn or error", c.LogLevel)
	}
	for i := range c.Peers {
		p := &c.Peers[i]
		if p.Cert == "" {
			return fmt.Errorf("config: peers[%d].cert: required", i)
		}
		p.Cert = resolve(baseDir, p.Cert)
		for _, e := range p.Endpoints {
			ap, err := netip.ParseAddrPort(e)
			if err != nil {
				return fmt.Errorf("config: peers[%d].endpoints: %w", i, err)
			}
			if ap.Port() == 0 || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
				return fmt.Errorf("config: peers[%d].endpoints: %s is not a usable address", i, e)
			}
			p.EndpointAddrs = append(p.EndpointAddrs, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
	}
	return nil
}

func resolve(base, p string) string {
	if filepath.IsAbs(p) || base == "" {
		return p
	}
	return filepath.Join(base, p)
}
