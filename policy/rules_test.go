package policy

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestRulesValidate(t *testing.T) {
	many := make([]Rule, MaxRules+1)
	for i := range many {
		many[i] = Rule{Srcs: []netip.Prefix{pfx("10.0.0.1/32")}}
	}
	tests := []struct {
		name  string
		rules Rules
		err   string // substring; empty: valid
	}{
		{"empty", Rules{}, ""},
		{"allow all", AllowAll(), ""},
		{"tcp ports", Rules{Allow: []Rule{{Srcs: []netip.Prefix{pfx("10.0.0.1/32")}, Proto: ProtoTCP, Ports: []PortRange{{22, 22}, {80, 89}}}}}, ""},
		{"any proto with ports", Rules{Allow: []Rule{{Srcs: []netip.Prefix{pfx("fd00::/64")}, Ports: []PortRange{{53, 53}}}}}, ""},
		{"icmp without ports", Rules{Allow: []Rule{{Srcs: []netip.Prefix{pfx("10.0.0.0/8")}, Proto: ProtoICMP}}}, ""},
		{"no sources", Rules{Allow: []Rule{{Proto: ProtoTCP}}}, "rule 0 has no sources"},
		{"invalid prefix", Rules{Allow: []Rule{{Srcs: []netip.Prefix{{}}}}}, "rule 0: invalid source prefix"},
		{"reversed range", Rules{Allow: []Rule{AllowAll().Allow[0], {Srcs: []netip.Prefix{pfx("10.0.0.1/32")}, Proto: ProtoUDP, Ports: []PortRange{{90, 80}}}}}, "rule 1: port range 90-80 is reversed"},
		{"ports on icmp", Rules{Allow: []Rule{{Srcs: []netip.Prefix{pfx("10.0.0.1/32")}, Proto: ProtoICMP, Ports: []PortRange{{1, 1}}}}}, "ports given for protocol 1"},
		{"ports on gre", Rules{Allow: []Rule{{Srcs: []netip.Prefix{pfx("10.0.0.1/32")}, Proto: 47, Ports: []PortRange{{1, 1}}}}}, "ports given for protocol 47"},
		{"too many rules", Rules{Allow: many}, "rules, at most"},
		{"too many ports", Rules{Allow: []Rule{{Srcs: []netip.Prefix{pfx("10.0.0.1/32")}, Ports: make([]PortRange, MaxPortsPerRule+1)}}}, "rule 0 is too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rules.Validate()
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("Validate = %v, want error containing %q", err, tt.err)
			}
		})
	}
}

func TestFilterAllow(t *testing.T) {
	rules := Rules{Allow: []Rule{
		// A host may reach TCP 22 and 80-89.
		{Srcs: []netip.Prefix{pfx("100.64.0.1/32"), pfx("fd7a::1/128")}, Proto: ProtoTCP, Ports: []PortRange{{22, 22}, {80, 89}}},
		// A subnet may send ICMP of any kind.
		{Srcs: []netip.Prefix{pfx("100.64.1.0/24")}, Proto: ProtoICMP},
		// Any protocol with ports, port 53, from a wide v6 prefix (not masked: Compile masks).
		{Srcs: []netip.Prefix{pfx("fd7a::5/64")}, Ports: []PortRange{{53, 53}}},
		// Anything from one host.
		{Srcs: []netip.Prefix{pfx("100.64.0.9/32")}},
	}}
	if err := rules.Validate(); err != nil {
		t.Fatal(err)
	}
	f := rules.Compile()
	tests := []struct {
		src   string
		proto uint8
		port  uint16
		want  bool
	}{
		{"100.64.0.1", ProtoTCP, 22, true},
		{"100.64.0.1", ProtoTCP, 80, true},
		{"100.64.0.1", ProtoTCP, 89, true},
		{"100.64.0.1", ProtoTCP, 90, false},
		{"100.64.0.1", ProtoTCP, 21, false},
		{"100.64.0.1", ProtoUDP, 22, false},
		{"100.64.0.1", ProtoICMP, 0, false},
		{"fd7a::1", ProtoTCP, 85, true},
		{"fd7a::2", ProtoTCP, 85, false}, // inside fd7a::/64, but that rule is port 53 only
		{"fd7a::2", ProtoTCP, 53, true},
		{"fd7a::2", ProtoUDP, 53, true},
		{"fd7a::2", ProtoSCTP, 53, true},
		{"fd7a::2", ProtoICMPv6, 0, false}, // a port list never matches a protocol without ports
		{"fd7a::2", 47, 53, false},
		{"fd7b::2", ProtoUDP, 53, false},
		{"100.64.1.77", ProtoICMP, 0, true},
		{"100.64.1.77", ProtoICMPv6, 0, false},
		{"100.64.1.77", ProtoTCP, 22, false},
		{"100.64.2.1", ProtoICMP, 0, false},
		{"100.64.0.9", 47, 0, true},
		{"100.64.0.9", ProtoTCP, 1, true},
		{"::ffff:100.64.0.9", ProtoTCP, 1, false}, // a mapped address is another address
		{"100.64.0.10", ProtoTCP, 22, false},
	}
	for _, tt := range tests {
		if got := f.Allow(addr(tt.src), tt.proto, tt.port); got != tt.want {
			t.Errorf("Allow(%s, %d, %d) = %v, want %v", tt.src, tt.proto, tt.port, got, tt.want)
		}
	}
	// fd7a::1 also lies in the wide rule: both paths are consulted.
	if !f.Allow(addr("fd7a::1"), ProtoUDP, 53) {
		t.Error("host with a wide rule: want allowed")
	}
}

func TestFilterDefaultDeny(t *testing.T) {
	var nilFilter *Filter
	if nilFilter.Allow(addr("10.0.0.1"), ProtoTCP, 22) {
		t.Error("nil filter allowed a packet")
	}
	if (Rules{}).Compile().Allow(addr("10.0.0.1"), ProtoICMP, 0) {
		t.Error("empty rules allowed a packet")
	}
	all := AllowAll().Compile()
	for _, a := range []string{"10.0.0.1", "fd00::1", "0.0.0.0", "ffff::"} {
		if !all.Allow(addr(a), ProtoUDP, 9) || !all.Allow(addr(a), 47, 0) {
			t.Errorf("AllowAll denied %s", a)
		}
	}
}

func TestFilterAllowNoAllocs(t *testing.T) {
	f := Rules{Allow: []Rule{
		{Srcs: []netip.Prefix{pfx("10.0.0.1/32"), pfx("10.0.0.2/32")}, Proto: ProtoTCP, Ports: []PortRange{{22, 22}, {80, 89}}},
		{Srcs: []netip.Prefix{pfx("10.1.0.0/16"), pfx("fd00::/8")}, Proto: ProtoUDP},
	}}.Compile()
	for _, src := range []netip.Addr{addr("10.0.0.1"), addr("10.1.2.3"), addr("fd00::1"), addr("192.0.2.1")} {
		if n := testing.AllocsPerRun(1000, func() {
			f.Allow(src, ProtoTCP, 85)
			f.Allow(src, ProtoUDP, 53)
			f.Allow(src, ProtoICMP, 0)
		}); n != 0 {
			t.Errorf("Allow(%s) allocates %v times", src, n)
		}
	}
}

func TestRulesJSONAndEqual(t *testing.T) {
	r := Rules{Allow: []Rule{
		{Srcs: []netip.Prefix{pfx("10.0.0.1/32"), pfx("fd00::/64")}, Proto: ProtoTCP, Ports: []PortRange{{22, 22}}},
		{Srcs: []netip.Prefix{pfx("0.0.0.0/0")}, Proto: ProtoICMP},
	}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"allow":[{"srcs":["10.0.0.1/32","fd00::/64"],"proto":6,"ports":[{"first":22,"last":22}]},{"srcs":["0.0.0.0/0"],"proto":1}]}`
	if string(b) != want {
		t.Errorf("JSON:\n got %s\nwant %s", b, want)
	}
	var back Rules
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Equal(r) {
		t.Errorf("round trip: %s", cmp.Diff(r, back))
	}
	other := Rules{Allow: []Rule{r.Allow[1], r.Allow[0]}}
	if r.Equal(other) {
		t.Error("Equal ignored rule order")
	}
	if !(Rules{}).Equal(Rules{Allow: []Rule{}}) {
		t.Error("nil and empty rules differ")
	}
}
