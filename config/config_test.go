package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

const sample = `
listen: 192.0.2.1:4242        # UDP underlay address
ca: /path/ca.crt
cert: node.crt
key: /path/node.key
tun: x0t0
peers:
  - cert: /path/other/node.crt
    endpoints: [192.0.2.2:4242, "[2001:db8::2]:4242"]
  - cert: relay-only.crt
`

func TestParseSample(t *testing.T) {
	c, err := Parse([]byte(sample), "/etc/x0t")
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != netip.MustParseAddrPort("192.0.2.1:4242") {
		t.Errorf("listen %v", c.ListenAddr)
	}
	if c.Cert != "/etc/x0t/node.crt" || c.CA != "/path/ca.crt" {
		t.Errorf("paths not resolved: cert %q ca %q", c.Cert, c.CA)
	}
	if c.TUN != "x0t0" || c.MTU != DefaultMTU || time.Duration(c.Keepalive) != DefaultKeepalive || c.BusyPoll != 0 {
		t.Errorf("defaults: tun %q mtu %d keepalive %v busy_poll %v", c.TUN, c.MTU, c.Keepalive, c.BusyPoll)
	}
	c, err = Parse([]byte(sample+"busy_poll: 10ms\n"), "/etc/x0t")
	if err != nil || time.Duration(c.BusyPoll) != 10*time.Millisecond {
		t.Errorf("busy_poll: %v, %v", c, err)
	}
	if len(c.Peers) != 2 || len(c.Peers[0].EndpointAddrs) != 2 || len(c.Peers[1].EndpointAddrs) != 0 {
		t.Fatalf("peers: %+v", c.Peers)
	}
	if c.Peers[1].Cert != "/etc/x0t/relay-only.crt" {
		t.Errorf("peer cert path %q", c.Peers[1].Cert)
	}
}

func TestParseErrors(t *testing.T) {
	base := "listen: 10.0.0.1:4242\nca: a\ncert: b\nkey: c\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"empty", "", "empty"},
		{"unknown key", base + "bogus: 1\n", "bogus"},
		{"no listen", "ca: a\ncert: b\nkey: c\n", "listen: required"},
		{"bad listen", "listen: nowhere\nca: a\ncert: b\nkey: c\n", "listen"},
		{"no key", "listen: 10.0.0.1:1\nca: a\ncert: b\n", "key: required"},
		{"both devices", base + "tun: x\nnetstack: true\n", "choose one"},
		{"long tun", base + "tun: abcdefghijklmnopq\n", "longer than 15"},
		{"mtu", base + "mtu: 100\n", "mtu"},
		{"keepalive", base + "keepalive: 5ms\n", "keepalive"},
		{"keepalive syntax", base + "keepalive: soon\n", "duration"},
		{"busy_poll negative", base + "busy_poll: -1ms\n", "busy_poll"},
		{"busy_poll too long", base + "busy_poll: 2s\n", "busy_poll"},
		{"peer without cert", base + "peers:\n  - endpoints: [10.0.0.2:1]\n", "peers[0].cert"},
		{"bad endpoint", base + "peers:\n  - cert: x\n    endpoints: [10.0.0.2]\n", "peers[0].endpoints"},
		{"zero port", base + "peers:\n  - cert: x\n    endpoints: [10.0.0.2:0]\n", "not a usable"},
		{"log level", base + "log_level: loud\n", "log_level"},
		{"not yaml", "{{{", "config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("listen: 10.0.0.1:4242\nca: a\ncert: b\nkey: c\nnetstack: true\n"))
	f.Add([]byte("peers: [{cert: x, endpoints: ['[::1]:1']}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "/base")
		if err != nil {
			return
		}
		if !c.ListenAddr.IsValid() || c.CA == "" || c.Cert == "" || c.Key == "" {
			t.Fatalf("accepted config misses required fields: %+v", c)
		}
		if c.MTU < MinMTU || c.MTU > MaxMTU {
			t.Fatalf("accepted mtu %d", c.MTU)
		}
		if c.BusyPoll < 0 || time.Duration(c.BusyPoll) > MaxBusyPoll {
			t.Fatalf("accepted busy_poll %v", time.Duration(c.BusyPoll))
		}
		for _, p := range c.Peers {
			if len(p.EndpointAddrs) != len(p.Endpoints) {
				t.Fatal("endpoints not all parsed")
			}
		}
	})
}
