package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = addr(s)
	}
	return out
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = pfx(s)
	}
	return out
}

// The mesh of the example policy.
var (
	alpha = Member{ID: "a1", Name: "alpha", Addrs: addrs("100.64.0.1", "fd7a::1")}
	beta  = Member{ID: "b2", Name: "beta", Addrs: addrs("100.64.0.2", "fd7a::2")}
	gamma = Member{ID: "c3", Name: "gamma", Addrs: addrs("100.64.0.3")}
	db1   = Member{ID: "d4", Name: "db1", Tags: []string{"tag:db"}, Addrs: addrs("100.64.0.4", "fd7a::4")}
	delta = Member{ID: "e5", Name: "delta", Addrs: addrs("100.64.0.5")}
	web1  = Member{ID: "f6", Name: "web1", Tags: []string{"web"}, Addrs: addrs("100.64.0.6")}
	mesh  = []Member{alpha, beta, gamma, db1, delta, web1}
)

func TestCheck(t *testing.T) {
	p := mustParse(t, examplePolicy)
	tests := []struct {
		src, dst Member
		proto    uint8
		port     uint16
		want     bool
	}{
		{alpha, beta, ProtoTCP, 22, true}, // node:alpha is in group:web
		{alpha, beta, ProtoTCP, 85, true},
		{alpha, beta, ProtoTCP, 90, false},
		{alpha, beta, ProtoUDP, 22, false},
		{alpha, db1, ProtoTCP, 5432, true},
		{alpha, db1, ProtoTCP, 22, false},
		{web1, db1, ProtoTCP, 5432, true}, // tag:web (written without the prefix)
		{gamma, db1, ProtoTCP, 5432, false},
		{gamma, beta, ProtoTCP, 22, false},
		{delta, db1, ProtoTCP, 5432, false},
		{db1, beta, ProtoTCP, 22, false},
		{beta, alpha, ProtoTCP, 22, false},   // rules are one way
		{delta, alpha, ProtoICMP, 0, true},   // icmp is ICMP ...
		{delta, alpha, ProtoICMPv6, 0, true}, // ... and ICMPv6
		{delta, alpha, 47, 0, false},
		{Member{Name: "stranger"}, beta, ProtoICMP, 0, true}, // "*" is every member
		{Member{Tags: []string{"web"}}, beta, ProtoTCP, 80, true},
	}
	for _, tt := range tests {
		if got := p.Check(tt.src, tt.dst, tt.proto, tt.port); got != tt.want {
			t.Errorf("Check(%s → %s, %d/%d) = %v, want %v", tt.src.Name, tt.dst.Name, tt.proto, tt.port, got, tt.want)
		}
	}
}

func TestCheckPrefixes(t *testing.T) {
	p := mustParse(t, `{
	  "hosts": {"lan": "100.64.0.0/30"},
	  "acls": [
	    {"action": "accept", "src": ["lan"], "dst": ["[fd7a::4]:443"], "proto": "tcp"},
	    {"action": "accept", "src": ["fd7a::/120"], "dst": ["100.64.0.2/32:53"]}
	  ]}`)
	tests := []struct {
		src, dst Member
		proto    uint8
		port     uint16
		want     bool
	}{
		{alpha, db1, ProtoTCP, 443, true}, // 100.64.0.1 is in lan; fd7a::4 is db1's
		{Member{Addrs: addrs("fd7a::1")}, db1, ProtoTCP, 443, false},
		{Member{Addrs: addrs("100.64.0.3")}, db1, ProtoTCP, 443, true}, // any sender with a lan address
		{delta, db1, ProtoTCP, 443, false},                             // 100.64.0.5 is outside lan
		{alpha, beta, ProtoUDP, 53, true},                              // by alpha's IPv6 address
		{alpha, beta, ProtoSCTP, 53, true},                             // no proto: any protocol with ports ...
		{alpha, beta, ProtoICMPv6, 0, false},                           // ... but a port list excludes ICMP
		{gamma, beta, ProtoUDP, 53, false},                             // gamma has no IPv6 address
	}
	for _, tt := range tests {
		if got := p.Check(tt.src, tt.dst, tt.proto, tt.port); got != tt.want {
			t.Errorf("Check(%v → %s, %d/%d) = %v, want %v", tt.src.Addrs, tt.dst.Name, tt.proto, tt.port, got, tt.want)
		}
	}
}

func TestCompile(t *testing.T) {
	everything := prefixes("0.0.0.0/0", "::/0")
	tests := []struct {
		name   string
		policy string
		node   Member
		want   []Rule
	}{
		{
			name:   "example on beta",
			policy: examplePolicy,
			node:   beta,
			want: []Rule{
				{Srcs: everything, Proto: ProtoICMP},
				{Srcs: prefixes("100.64.0.1/32", "100.64.0.6/32", "fd7a::1/128"), Proto: ProtoTCP, Ports: []PortRange{{22, 22}, {80, 89}}},
				{Srcs: everything, Proto: ProtoICMPv6},
			},
		},
		{
			name:   "example on db1",
			policy: examplePolicy,
			node:   db1,
			want: []Rule{
				{Srcs: everything, Proto: ProtoICMP},
				{Srcs: prefixes("100.64.0.1/32", "100.64.0.6/32", "fd7a::1/128"), Proto: ProtoTCP, Ports: []PortRange{{5432, 5432}}},
				{Srcs: everything, Proto: ProtoICMPv6},
			},
		},
		{
			name:   "example on alpha",
			policy: examplePolicy,
			node:   alpha,
			want:   []Rule{{Srcs: everything, Proto: ProtoICMP}, {Srcs: everything, Proto: ProtoICMPv6}},
		},
		{
			name:   "nothing selects the node",
			policy: `{"acls": [{"action": "accept", "src": ["*"], "dst": ["tag:db:*"]}]}`,
			node:   alpha,
			want:   []Rule{},
		},
		{
			name:   "sources selecting nobody",
			policy: `{"acls": [{"action": "accept", "src": ["tag:nobody", "node:ghost"], "dst": ["*:*"]}]}`,
			node:   alpha,
			want:   []Rule{},
		},
		{
			name: "a broader rule absorbs narrower ones",
			policy: `{"acls": [
			  {"action": "accept", "src": ["*"], "dst": ["*:*"]},
			  {"action": "accept", "src": ["node:alpha"], "dst": ["node:beta:22"], "proto": "tcp"},
			  {"action": "accept", "src": ["tag:web"], "dst": ["*:*"], "proto": "icmp"}]}`,
			node: beta,
			want: AllowAll().Allow,
		},
		{
			name: "same sources share a port list",
			policy: `{"acls": [
			  {"action": "accept", "src": ["node:alpha"], "dst": ["node:beta:22"], "proto": "tcp"},
			  {"action": "accept", "src": ["node:alpha"], "dst": ["node:beta:443,20-25", "tag:db:1"], "proto": "tcp"},
			  {"action": "accept", "src": ["node:alpha"], "dst": ["node:beta:26"], "proto": "tcp"}]}`,
			node: beta,
			want: []Rule{{Srcs: prefixes("100.64.0.1/32", "fd7a::1/128"), Proto: ProtoTCP, Ports: []PortRange{{20, 26}, {443, 443}}}},
		},
		{
			name: "same ports share a source list",
			policy: `{"groups": {"group:ops": ["node:delta", "node:alpha"]},
			  "acls": [
			  {"action": "accept", "src": ["node:alpha"], "dst": ["node:beta:22"], "proto": "tcp"},
			  {"action": "accept", "src": ["group:ops", "tag:web"], "dst": ["node:beta:22"], "proto": "tcp"}]}`,
			node: beta,
			want: []Rule{{Srcs: prefixes("100.64.0.1/32", "100.64.0.5/32", "100.64.0.6/32", "fd7a::1/128"), Proto: ProtoTCP, Ports: []PortRange{{22, 22}}}},
		},
		{
			name: "any protocol on a port covers tcp on it",
			policy: `{"acls": [
			  {"action": "accept", "src": ["*"], "dst": ["node:beta:53"]},
			  {"action": "accept", "src": ["node:alpha"], "dst": ["node:beta:53"], "proto": "udp"},
			  {"action": "accept", "src": ["node:alpha"], "dst": ["node:beta:*"], "proto": "icmp"}]}`,
			node: beta,
			want: []Rule{
				{Srcs: everything, Ports: []PortRange{{53, 53}}},
				{Srcs: prefixes("100.64.0.1/32", "fd7a::1/128"), Proto: ProtoICMP},
				{Srcs: prefixes("100.64.0.1/32", "fd7a::1/128"), Proto: ProtoICMPv6},
			},
		},
		{
			name: "wide prefixes absorb hosts",
			policy: `{"hosts": {"lan": "100.64.0.0/24"},
			  "acls": [{"action": "accept", "src": ["node:alpha", "lan", "100.64.0.0/30", "tag:web"], "dst": ["node:beta:22"], "proto": "tcp"}]}`,
			node: beta,
			want: []Rule{{Srcs: prefixes("100.64.0.0/24", "fd7a::1/128"), Proto: ProtoTCP, Ports: []PortRange{{22, 22}}}},
		},
		{
			name: "every tcp port is any tcp packet, but not for any protocol",
			policy: `{"acls": [
			  {"action": "accept", "src": ["node:alpha"], "dst": ["node:beta:0-100,101-65535"], "proto": "tcp"},
			  {"action": "accept", "src": ["node:delta"], "dst": ["node:beta:0-65535"]}]}`,
			node: beta,
			want: []Rule{
				{Srcs: prefixes("100.64.0.5/32"), Ports: []PortRange{{0, 65535}}},
				{Srcs: prefixes("100.64.0.1/32", "fd7a::1/128"), Proto: ProtoTCP},
			},
		},
		{
			name: "destination by prefix and by several selectors",
			policy: `{"acls": [
			  {"action": "accept", "src": ["node:alpha"], "dst": ["[fd7a::2]:22", "node:beta:80", "100.64.0.0/24:443", "tag:db:5432"], "proto": "tcp"}]}`,
			node: beta,
			want: []Rule{{Srcs: prefixes("100.64.0.1/32", "fd7a::1/128"), Proto: ProtoTCP, Ports: []PortRange{{22, 22}, {80, 80}, {443, 443}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.policy)
			got := p.Compile(tt.node, mesh)
			if err := got.Validate(); err != nil {
				t.Fatalf("compiled rules are invalid: %v", err)
			}
			if diff := cmp.Diff(tt.want, got.Allow, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("Compile (-want +got):\n%s", diff)
			}
			// The order of members does not change the rules.
			rev := slices.Clone(mesh)
			slices.Reverse(rev)
			if again := p.Compile(tt.node, rev); !again.Equal(got) {
				t.Errorf("Compile depends on member order:\n%v\n%v", got, again)
			}
		})
	}
}

func TestCompileDefault(t *testing.T) {
	got := Default().Compile(alpha, mesh)
	if !got.Equal(AllowAll()) {
		t.Errorf("Default compiles to %v, want AllowAll", got)
	}
}

// The rule count follows the policy's distinct protocol and port sets, not the
// number of members or ACLs.
func TestCompileStaysSmall(t *testing.T) {
	p := mustParse(t, benchPolicy)
	members := benchMembers(1000)
	for _, node := range members[:20] {
		rules := p.Compile(node, members)
		if err := rules.Validate(); err != nil {
			t.Fatal(err)
		}
		if len(rules.Allow) > 8 {
			t.Errorf("node %s: %d rules:\n%v", node.Name, len(rules.Allow), rules)
		}
	}
}

func TestICMPMeansBoth(t *testing.T) {
	p := mustParse(t, `{"acls": [{"action": "accept", "src": ["node:alpha"], "dst": ["node:beta:*"], "proto": "icmp"}]}`)
	f := p.Compile(beta, mesh).Compile()
	for _, a := range alpha.Addrs {
		for _, proto := range []uint8{ProtoICMP, ProtoICMPv6} {
			if !f.Allow(a, proto, 0) || !p.Check(alpha, beta, proto, 0) {
				t.Errorf("icmp rule does not accept protocol %d from %s", proto, a)
			}
		}
		if f.Allow(a, ProtoTCP, 0) || f.Allow(a, 47, 0) {
			t.Errorf("icmp rule accepts other protocols from %s", a)
		}
	}
}

func TestRunTests(t *testing.T) {
	p := mustParse(t, `{
	  "hosts": {"beta-v4": "100.64.0.2"},
	  "acls": [
	    {"action": "accept", "src": ["node:alpha", "tag:web"], "dst": ["node:beta:22"], "proto": "tcp"},
	    {"action": "accept", "src": ["100.64.0.0/24"], "dst": ["node:beta:53"], "proto": "udp"},
	    {"action": "accept", "src": ["*"], "dst": ["node:beta:*"], "proto": "1"}
	  ],
	  "tests": [
	    {"src": "node:alpha", "dst": "node:beta", "proto": "tcp", "port": 22, "want": "accept"},
	    {"src": "node:gamma", "dst": "node:beta", "proto": "tcp", "port": 23, "want": "deny"},
	    {"src": "node:nobody", "dst": "node:beta", "proto": "tcp", "port": 22, "want": "deny"},
	    {"src": "tag:web", "dst": "beta-v4", "proto": "tcp", "port": 22, "want": "accept"},
	    {"src": "100.64.0.200", "dst": "node:beta", "proto": "udp", "port": 53, "want": "accept"},
	    {"src": "fd7a::1", "dst": "node:beta", "proto": "udp", "port": 53, "want": "accept"},
	    {"src": "node:delta", "dst": "node:beta", "proto": "icmp", "want": "accept"},
	    {"src": "node:delta", "dst": "10.9.9.9", "proto": "udp", "port": 53, "want": "deny"},
	    {"src": "node:twin", "dst": "node:beta", "proto": "udp", "port": 53, "want": "deny"}
	  ]}`)
	members := append(slices.Clone(mesh), Member{Name: "twin"}, Member{Name: "twin"})
	got := p.RunTests(members)
	want := []struct {
		got  string
		pass bool
		err  string
	}{
		{Accept, true, ""},
		{Deny, true, ""},
		{"", false, `unknown node "nobody"`},
		{Accept, true, ""},
		{Accept, true, ""}, // a non-member address, as a source
		{Deny, false, ""},  // alpha's IPv6 address is not in 100.64.0.0/24
		{Mixed, false, ""}, // proto "1" is ICMP only
		{"", false, "no member has address 10.9.9.9"},
		{"", false, `2 members are named "twin"`},
	}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Index != i || g.Test != p.Tests[i] || g.Got != w.got || g.Pass != w.pass || g.Err != w.err {
			t.Errorf("tests[%d] = %+v, want got=%q pass=%v err=%q", i, g, w.got, w.pass, w.err)
		}
	}
}

func TestValidate(t *testing.T) {
	p := mustParse(t, examplePolicy)
	if err := p.Validate(mesh); err != nil {
		t.Errorf("Validate: %v", err)
	}

	// Without gamma in the mesh, the second test can not run.
	err := p.Validate([]Member{alpha, beta})
	if !errors.Is(err, ErrTestFailed) || !strings.Contains(err.Error(), `policy: tests[1]: node:gamma → node:beta tcp/22: unknown node "gamma"`) {
		t.Errorf("Validate without gamma = %v", err)
	}

	// A policy whose tests fail is refused, and each failure is named.
	bad := mustParse(t, strings.Replace(examplePolicy, `"port": 22, "want": "accept"`, `"port": 23, "want": "accept"`, 1))
	err = bad.Validate(mesh)
	if !errors.Is(err, ErrTestFailed) || err.Error() != "policy: tests[0]: node:alpha → node:beta tcp/23: want accept, got deny: policy test failed" {
		t.Errorf("Validate of a failing policy = %v", err)
	}

	// Validate re-checks a policy changed or built in code.
	changed := mustParse(t, examplePolicy)
	changed.ACLs[0].Dst[0] = "tag:db"
	if err := changed.Validate(mesh); err == nil || !strings.Contains(err.Error(), "policy: acls[0].dst[0]") || errors.Is(err, ErrTestFailed) {
		t.Errorf("Validate of a changed policy = %v", err)
	}
	if err := (*Policy)(nil).Validate(nil); err == nil {
		t.Error("Validate of nil policy succeeded")
	}
}

// A Policy written as a Go literal works without Parse, and fails closed when
// it is invalid.
func TestLiteralPolicy(t *testing.T) {
	p := &Policy{ACLs: []ACL{{Action: Accept, Src: []string{"node:alpha"}, Dst: []string{"node:beta:22"}, Proto: "tcp"}}}
	if !p.Check(alpha, beta, ProtoTCP, 22) || p.Check(alpha, beta, ProtoTCP, 23) {
		t.Error("literal policy: wrong verdicts")
	}
	if got := p.Compile(beta, mesh); len(got.Allow) != 1 {
		t.Errorf("literal policy compiles to %v", got)
	}
	invalid := &Policy{ACLs: []ACL{{Action: "drop", Src: []string{"*"}, Dst: []string{"*:*"}}}, Tests: []Test{{Src: "node:alpha"}}}
	if invalid.Check(alpha, beta, ProtoTCP, 22) {
		t.Error("invalid policy accepted a packet")
	}
	if got := invalid.Compile(beta, mesh); len(got.Allow) != 0 || got.Allow == nil {
		t.Errorf("invalid policy compiles to %#v, want no rules", got)
	}
	if res := invalid.RunTests(mesh); len(res) != 1 || res[0].Pass || !strings.Contains(res[0].Err, "acls[0].action") {
		t.Errorf("invalid policy RunTests = %+v", res)
	}
}

func ExamplePolicy_Compile() {
	p, err := Parse([]byte(`{
	  "groups": {"group:web": ["tag:web", "node:alpha"]},
	  "acls": [{"action": "accept", "src": ["group:web"], "dst": ["tag:db:5432"], "proto": "tcp"}]
	}`))
	if err != nil {
		panic(err)
	}
	members := []Member{
		{Name: "alpha", Addrs: []netip.Addr{netip.MustParseAddr("100.64.0.1")}},
		{Name: "web1", Tags: []string{"web"}, Addrs: []netip.Addr{netip.MustParseAddr("100.64.0.2")}},
		{Name: "db1", Tags: []string{"db"}, Addrs: []netip.Addr{netip.MustParseAddr("100.64.0.3")}},
	}
	rules := p.Compile(members[2], members)
	fmt.Println(rules.Allow)
	f := rules.Compile()
	fmt.Println(f.Allow(netip.MustParseAddr("100.64.0.2"), ProtoTCP, 5432), f.Allow(netip.MustParseAddr("100.64.0.2"), ProtoTCP, 22))
	// Output:
	// [{[100.64.0.1/32 100.64.0.2/32] 6 [{5432 5432}]}]
	// true false
}

// A policy with as many ACLs as allowed, each with its own port, still
// compiles to valid rules.
func TestCompileManyACLs(t *testing.T) {
	p := &Policy{}
	for i := range MaxACLs {
		p.ACLs = append(p.ACLs, ACL{Action: Accept, Src: []string{fmt.Sprintf("node:n%d", i%1000)}, Dst: []string{fmt.Sprintf("*:%d", i)}, Proto: "tcp"})
	}
	data, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p = mustParse(t, string(data))
	members := benchMembers(1000)
	rules := p.Compile(members[0], members)
	if err := rules.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(rules.Allow) != 1000 { // one per source: its four ports merged
		t.Errorf("%d rules, want 1000", len(rules.Allow))
	}
}

// A parsed Policy is shared by the control plane's goroutines.
func TestConcurrentUse(t *testing.T) {
	p := mustParse(t, examplePolicy)
	want := p.Compile(beta, mesh)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				if !p.Compile(beta, mesh).Equal(want) || !p.Check(alpha, beta, ProtoTCP, 22) {
					t.Error("concurrent use changed a result")
					return
				}
				p.RunTests(mesh)
				if _, err := p.Marshal(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
