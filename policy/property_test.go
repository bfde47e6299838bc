package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// gen draws random policies and meshes from small spaces (a few names, tags,
// addresses and ports), so that selectors, prefixes and port lists overlap
// often and the merging in Compile has work to do.
type gen struct {
	rng *rand.Rand
}

var (
	genNames  = []string{"a", "b", "c", "d", "e", "f", "g", "h"} // g and h never enroll
	genTags   = []string{"x", "y", "z", "w"}
	genProtos = []string{"", "", "tcp", "udp", "icmp", "sctp", "6", "17", "1", "58", "47"}
	// Packets use these, plus random ones.
	genPacketProtos = []uint8{0, ProtoICMP, 2, ProtoTCP, ProtoUDP, 47, ProtoICMPv6, ProtoSCTP}
)

func (g gen) pick(ss []string) string { return ss[g.rng.IntN(len(ss))] }

// addr4 and addr6 are addresses in 10.0.0.0/28 and fd00::/124.
func (g gen) addr4() netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(g.rng.IntN(16))}) }
func (g gen) addr6() netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 15: byte(g.rng.IntN(16))})
}

func (g gen) prefix() string {
	if g.rng.IntN(2) == 0 {
		p, _ := g.addr4().Prefix(28 + g.rng.IntN(5))
		if p.IsSingleIP() && g.rng.IntN(2) == 0 {
			return p.Addr().String()
		}
		return p.String()
	}
	p, _ := g.addr6().Prefix(124 + g.rng.IntN(5))
	return p.String()
}

func (g gen) selector(groups, hosts []string) string {
	switch n := g.rng.IntN(20); {
	case n == 0:
		return "*"
	case n < 6:
		return "node:" + g.pick(genNames)
	case n < 11:
		return "tag:" + g.pick(genTags)
	case n < 15 && len(groups) > 0:
		return g.pick(groups)
	case n < 17 && len(hosts) > 0:
		return g.pick(hosts)
	default:
		return g.prefix()
	}
}

func (g gen) ports(proto string) string {
	if proto == "icmp" || proto == "1" || proto == "58" || proto == "47" || g.rng.IntN(5) == 0 {
		return "*"
	}
	var parts []string
	for range 1 + g.rng.IntN(3) {
		a := 20 + g.rng.IntN(10)
		switch g.rng.IntN(4) {
		case 0:
			parts = append(parts, fmt.Sprintf("%d-%d", a, a+g.rng.IntN(5)))
		case 1:
			if g.rng.IntN(10) == 0 {
				parts = append(parts, "0-65535")
				continue
			}
			fallthrough
		default:
			parts = append(parts, fmt.Sprint(a))
		}
	}
	return strings.Join(parts, ",")
}

func (g gen) destination(groups, hosts []string, proto string) string {
	sel := g.selector(groups, hosts)
	if strings.Contains(sel, ":") && !strings.Contains(sel, "/") && !strings.HasPrefix(sel, "node:") && !strings.HasPrefix(sel, "tag:") && !strings.HasPrefix(sel, "group:") {
		sel = "[" + sel + "]" // a bare IPv6 address
	}
	return sel + ":" + g.ports(proto)
}

func (g gen) policy() *Policy {
	p := &Policy{}
	var hosts, groups []string
	if g.rng.IntN(2) == 0 {
		p.Hosts = map[string]string{}
		for i := range g.rng.IntN(3) {
			name := fmt.Sprintf("h%d", i)
			p.Hosts[name] = g.prefix()
			hosts = append(hosts, name)
		}
	}
	if n := g.rng.IntN(4); n > 0 {
		p.Groups = map[string][]string{}
		for i := range n {
			name := fmt.Sprintf("group:g%d", i)
			var members []string
			for range g.rng.IntN(4) {
				members = append(members, g.selector(groups, hosts)) // earlier groups only: no cycles
			}
			p.Groups[name] = members
			groups = append(groups, name)
		}
	}
	for range 1 + g.rng.IntN(6) {
		a := ACL{Action: Accept, Proto: g.pick(genProtos)}
		for range 1 + g.rng.IntN(3) {
			a.Src = append(a.Src, g.selector(groups, hosts))
		}
		for range 1 + g.rng.IntN(3) {
			a.Dst = append(a.Dst, g.destination(groups, hosts, a.Proto))
		}
		p.ACLs = append(p.ACLs, a)
	}
	return p
}

// members returns up to six members named from genNames[:6] with distinct
// addresses: none, one or both families, sometimes two of one family.
func (g gen) members() []Member {
	used := map[netip.Addr]bool{}
	fresh := func(f func() netip.Addr) (netip.Addr, bool) {
		for range 8 {
			if a := f(); !used[a] {
				used[a] = true
				return a, true
			}
		}
		return netip.Addr{}, false
	}
	var ms []Member
	for _, i := range g.rng.Perm(6)[:1+g.rng.IntN(6)] {
		m := Member{ID: fmt.Sprint(i), Name: genNames[i]}
		for range g.rng.IntN(3) {
			m.Tags = append(m.Tags, g.pick(genTags))
		}
		if len(m.Tags) > 0 && g.rng.IntN(2) == 0 {
			m.Tags[0] = "tag:" + m.Tags[0]
		}
		for range g.rng.IntN(4) {
			f := g.addr4
			if g.rng.IntN(2) == 0 {
				f = g.addr6
			}
			if a, ok := fresh(f); ok {
				m.Addrs = append(m.Addrs, a)
			}
		}
		ms = append(ms, m)
	}
	return ms
}

func (g gen) packet() (uint8, uint16) {
	proto := genPacketProtos[g.rng.IntN(len(genPacketProtos))]
	if g.rng.IntN(10) == 0 {
		proto = uint8(g.rng.IntN(256))
	}
	port := uint16(18 + g.rng.IntN(16))
	switch g.rng.IntN(10) {
	case 0:
		port = 0
	case 1:
		port = uint16(g.rng.IntN(65536))
	}
	return proto, port
}

// checkCompileEqualsCheck asserts compile ≡ interpret for every node of the
// mesh: the node's compiled filter accepts a packet from an address exactly
// when Check accepts it from the member holding that address (restricted to
// it), or, for an address no member holds, from a sender with just that
// address; and a member with addresses is accepted by Check exactly when one
// of its addresses is accepted by the filter.
func checkCompileEqualsCheck(t *testing.T, p *Policy, members []Member, g gen, packets int) {
	t.Helper()
	held := map[netip.Addr]bool{}
	for _, m := range members {
		for _, a := range m.Addrs {
			held[a] = true
		}
	}
	var strangers []netip.Addr
	for range 4 {
		for _, a := range []netip.Addr{g.addr4(), g.addr6()} {
			if !held[a] {
				strangers = append(strangers, a)
			}
		}
	}
	for _, node := range members {
		rules := p.Compile(node, members)
		if err := rules.Validate(); err != nil {
			t.Fatalf("node %s: invalid rules: %v\n%v", node.Name, err, rules)
		}
		f := rules.Compile()
		for range packets {
			proto, port := g.packet()
			for _, src := range members {
				anyAllowed := false
				for _, a := range src.Addrs {
					allowed := f.Allow(a, proto, port)
					one := src
					one.Addrs = []netip.Addr{a}
					if want := p.Check(one, node, proto, port); allowed != want {
						t.Fatalf("node %s, packet from %s (%s) proto %d port %d: compiled %v, Check %v\nrules: %v",
							node.Name, a, src.Name, proto, port, allowed, want, rules)
					}
					anyAllowed = anyAllowed || allowed
				}
				if len(src.Addrs) > 0 && anyAllowed != p.Check(src, node, proto, port) {
					t.Fatalf("node %s, member %s proto %d port %d: some address allowed %v, Check %v", node.Name, src.Name, proto, port, anyAllowed, !anyAllowed)
				}
			}
			for _, a := range strangers {
				allowed := f.Allow(a, proto, port)
				if want := p.Check(Member{Addrs: []netip.Addr{a}}, node, proto, port); allowed != want {
					t.Fatalf("node %s, packet from non-member %s proto %d port %d: compiled %v, Check %v\nrules: %v",
						node.Name, a, proto, port, allowed, want, rules)
				}
			}
		}
	}
}

// TestCompileEqualsCheck is the property test of the compiler: on many random
// policies and meshes, the compiled filter and the interpreter agree on random
// packets. The seed is fixed, so a failure reproduces.
func TestCompileEqualsCheck(t *testing.T) {
	rounds := 3000
	if testing.Short() {
		rounds = 300
	}
	g := gen{rand.New(rand.NewPCG(1, 2))}
	for i := range rounds {
		p := g.policy()
		data, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := Parse(data)
		if err != nil {
			t.Fatalf("round %d: generated policy does not parse: %v\n%s", i, err, data)
		}
		if diff := cmp.Diff(p, parsed, ignoreResolved, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round %d: parse changed the policy (-gen +parsed):\n%s", i, diff)
		}
		members := g.members()
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("policy:\n%s\nmembers: %+v", data, members)
				}
			}()
			checkCompileEqualsCheck(t, parsed, members, g, 12)

			// The same policy in any member order compiles to Equal rules.
			shuffled := slices.Clone(members)
			g.rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			for _, node := range members {
				if a, b := parsed.Compile(node, members), parsed.Compile(node, shuffled); !a.Equal(b) {
					t.Fatalf("node %s: member order changes the rules:\n%v\n%v", node.Name, a, b)
				}
			}
		})
		if t.Failed() {
			return
		}
	}
}
