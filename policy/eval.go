package policy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Member is a mesh member as the policy sees it: the name that node:NAME
// selects, the tags that tag:NAME selects and the overlay addresses that IP
// prefixes select and that compiled rules are made of.
type Member struct {
	ID    string       // the caller's identifier; the policy does not use it
	Name  string       // node name
	Tags  []string     // with or without the "tag:" prefix
	Addrs []netip.Addr // overlay addresses, without zones
}

// matches reports whether m is selected by name, tag or address.
func (s *selector) matches(m *Member) bool {
	if s.all || s.matchesByName(m) {
		return true
	}
	for _, p := range s.prefixes {
		for _, a := range m.Addrs {
			if p.Contains(a) {
				return true
			}
		}
	}
	return false
}

// matchesByName reports whether m is selected as a whole (by node name or
// tag), so that every one of its addresses is.
func (s *selector) matchesByName(m *Member) bool {
	if m.Name != "" {
		if _, ok := s.nodes[m.Name]; ok {
			return true
		}
	}
	if len(s.tags) > 0 {
		for _, t := range m.Tags {
			if _, ok := s.tags[strings.TrimPrefix(t, "tag:")]; ok {
				return true
			}
		}
	}
	return false
}

func protoMatch(protos []uint8, proto uint8) bool {
	for _, p := range protos {
		if p == 0 || p == proto {
			return true
		}
	}
	return false
}

// Check is the interpreter: it reports whether a packet from src to dst with
// protocol proto and destination port port (0 for protocols without ports)
// is accepted. An IP prefix selects a member if it contains any of the
// member's addresses; give src a single address to ask about packets from
// that address exactly. An invalid policy accepts nothing.
func (p *Policy) Check(src, dst Member, proto uint8, port uint16) bool {
	r, err := p.resolved()
	if err != nil {
		return false
	}
	return r.check(&src, &dst, proto, port)
}

func (r *resolved) check(src, dst *Member, proto uint8, port uint16) bool {
	for i := range r.acls {
		a := &r.acls[i]
		if !protoMatch(a.protos, proto) || !a.src.matches(src) {
			continue
		}
		for _, d := range a.dst {
			if portsMatch(d.ports, proto, port) && d.sel.matches(dst) {
				return true
			}
		}
	}
	return false
}

var (
	all4 = netip.MustParsePrefix("0.0.0.0/0")
	all6 = netip.MustParsePrefix("::/0")
)

// Compile returns the rules node enforces on the packets it receives: those
// of every ACL with a destination that selects node, with the sources turned
// into addresses. A member selected by name or tag contributes its host
// prefixes (/32, /128); IP prefixes and hosts stay prefixes; "*" becomes
// 0.0.0.0/0 and ::/0, which is exact because the tunnel admits only members'
// packets with their own source addresses. Rules are merged so that their
// number tracks the distinct protocol and port sets, not the ACLs or members,
// and the output is sorted, so equal inputs give Equal rules in any member
// order. An invalid policy compiles to no rules (deny everything).
func (p *Policy) Compile(node Member, members []Member) Rules {
	r, err := p.resolved()
	if err != nil {
		return Rules{Allow: []Rule{}}
	}
	return r.compile(&node, members)
}

// draft is a rule being compiled: srcs sorted and without nested prefixes,
// ports sorted and merged, nil for any.
type draft struct {
	proto uint8
	ports []PortRange
	srcs  []netip.Prefix
}

func (r *resolved) compile(node *Member, members []Member) Rules {
	type key struct {
		proto uint8
		ports string
	}
	byKey := map[key]*draft{}
	sources := map[*selector][]netip.Prefix{} // groups are shared selectors
	var ports []PortRange
	for i := range r.acls {
		a := &r.acls[i]
		ports = ports[:0]
		hit, anyPort := false, false
		for _, d := range a.dst {
			if !d.sel.matches(node) {
				continue
			}
			hit = true
			if d.ports == nil {
				anyPort = true
			}
			ports = append(ports, d.ports...)
		}
		if !hit {
			continue
		}
		srcs, ok := sources[a.src]
		if !ok {
			srcs = a.src.sources(members)
			sources[a.src] = srcs
		}
		if len(srcs) == 0 {
			continue
		}
		for _, proto := range a.protos {
			var ps []PortRange
			if !anyPort {
				ps = normPorts(proto, slices.Clone(ports))
			}
			k := key{proto, portsKey(ps)}
			d := byKey[k]
			if d == nil {
				d = &draft{proto: proto, ports: ps}
				byKey[k] = d
			}
			d.srcs = append(d.srcs, srcs...)
		}
	}
	rules := make([]draft, 0, len(byKey))
	for _, d := range byKey {
		d.srcs = normSrcs(d.srcs)
		rules = append(rules, *d)
	}
	rules = simplify(rules)
	out := make([]Rule, 0, len(rules))
	for _, d := range rules {
		for len(d.srcs) > MaxSrcsPerRule {
			out = append(out, Rule{Srcs: d.srcs[:MaxSrcsPerRule:MaxSrcsPerRule], Proto: d.proto, Ports: d.ports})
			d.srcs = d.srcs[MaxSrcsPerRule:]
		}
		out = append(out, Rule{Srcs: d.srcs, Proto: d.proto, Ports: d.ports})
	}
	return Rules{Allow: out}
}

// sources returns the addresses a source selector stands for among members.
func (s *selector) sources(members []Member) []netip.Prefix {
	if s.all {
		return []netip.Prefix{all4, all6}
	}
	out := slices.Clone(s.prefixes)
	if len(s.nodes) == 0 && len(s.tags) == 0 {
		return out
	}
	for i := range members {
		m := &members[i]
		if !s.matchesByName(m) {
			continue
		}
		for _, a := range m.Addrs {
			if a.IsValid() {
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
			}
		}
	}
	return out
}

// comparePrefix orders masked prefixes as netip.Prefix.Compare does (family,
// address, length), without masking them again: compiling sorts thousands.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// normSrcs sorts prefixes and drops duplicates and prefixes inside others.
func normSrcs(ps []netip.Prefix) []netip.Prefix {
	for i, p := range ps {
		if p.Bits() != p.Addr().BitLen() {
			ps[i] = p.Masked()
		}
	}
	slices.SortFunc(ps, comparePrefix)
	out := ps[:0]
	for _, p := range ps {
		// Sorted by address then length, a prefix that contains p is the last
		// one kept: anything kept after it would lie inside it.
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// containsPrefix reports whether p lies inside one of set (as normSrcs left it).
func containsPrefix(set []netip.Prefix, p netip.Prefix) bool {
	i, found := slices.BinarySearchFunc(set, p, comparePrefix)
	if found {
		return true
	}
	if i == 0 {
		return false
	}
	c := set[i-1]
	return c.Bits() <= p.Bits() && c.Contains(p.Addr())
}

// normPorts sorts and merges port ranges. A full range becomes nil (any) only
// for a protocol that has ports: for "any protocol" a port list also excludes
// protocols without ports, so 0-65535 is not the same as everything.
func normPorts(proto uint8, ps []PortRange) []PortRange {
	if len(ps) == 0 {
		return nil
	}
	slices.SortFunc(ps, func(a, b PortRange) int {
		return cmp.Or(cmp.Compare(a.First, b.First), cmp.Compare(a.Last, b.Last))
	})
	out := ps[:1]
	for _, r := range ps[1:] {
		last := &out[len(out)-1]
		if uint32(r.First) <= uint32(last.Last)+1 {
			last.Last = max(last.Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	if proto != 0 && len(out) == 1 && out[0] == (PortRange{0, 65535}) {
		return nil
	}
	return out
}

func portsKey(ps []PortRange) string {
	if ps == nil {
		return "*"
	}
	b := make([]byte, 0, 4*len(ps))
	for _, r := range ps {
		b = append(b, byte(r.First>>8), byte(r.First), byte(r.Last>>8), byte(r.Last))
	}
	return string(b)
}

func srcsKey(ps []netip.Prefix) string {
	b := make([]byte, 0, 17*len(ps))
	for _, p := range ps {
		a := p.Addr().As16()
		b = append(b, a[:]...)
		b = append(b, byte(p.Bits()))
	}
	return string(b)
}

// portsSuperset reports whether sup covers every port of sub (both normalized).
func portsSuperset(sup, sub []PortRange) bool {
	for _, r := range sub {
		i, _ := slices.BinarySearchFunc(sup, r.First, func(e PortRange, t uint16) int { return cmp.Compare(e.First, t) })
		if i < len(sup) && sup[i].First == r.First {
			i++
		}
		if i == 0 || sup[i-1].Last < r.Last {
			return false
		}
	}
	return true
}

// covers reports whether rule a accepts every packet that rule b accepts from
// the same source.
func covers(a, b *draft) bool {
	if a.proto != 0 && a.proto != b.proto {
		return false
	}
	if a.ports == nil {
		return true
	}
	return b.ports != nil && portsSuperset(a.ports, b.ports)
}

func compareDrafts(a, b draft) int {
	if c := cmp.Compare(a.proto, b.proto); c != 0 {
		return c
	}
	switch {
	case a.ports == nil && b.ports != nil:
		return -1
	case a.ports != nil && b.ports == nil:
		return 1
	}
	if c := slices.CompareFunc(a.ports, b.ports, func(x, y PortRange) int {
		return cmp.Or(cmp.Compare(x.First, y.First), cmp.Compare(x.Last, y.Last))
	}); c != 0 {
		return c
	}
	return slices.CompareFunc(a.srcs, b.srcs, comparePrefix)
}

// simplify merges and prunes rules until nothing changes: rules with the
// same protocol and sources share one port list, rules with the same
// protocol and ports share one source list, and a source is dropped from a
// rule when a broader rule already accepts everything it would from there.
// Each round removes a rule or a source, so it ends; as the rules are correct
// after any round, a pathological policy stops after a few rounds, and does
// without pruning (quadratic in the rule count) when it has very many rules.
func simplify(rules []draft) []draft {
	for round := 0; ; round++ {
		slices.SortFunc(rules, compareDrafts)
		n, total := len(rules), 0
		for _, d := range rules {
			total += len(d.srcs)
		}
		rules = mergeSameSrcs(rules)
		rules = mergeSamePorts(rules)
		if len(rules) <= maxSubsume {
			rules = subsume(rules)
		}
		after := 0
		for _, d := range rules {
			after += len(d.srcs)
		}
		if len(rules) == n && after == total || round == maxRounds {
			slices.SortFunc(rules, compareDrafts)
			return rules
		}
	}
}

// Bounds on simplify's work; real policies stay far below them.
const (
	maxRounds  = 8
	maxSubsume = 512
)

func mergeSameSrcs(rules []draft) []draft {
	type key struct {
		proto uint8
		srcs  string
	}
	idx := map[key]int{}
	out := rules[:0]
	for _, d := range rules {
		k := key{d.proto, srcsKey(d.srcs)}
		if i, ok := idx[k]; ok {
			var ps []PortRange
			if out[i].ports != nil && d.ports != nil {
				ps = normPorts(d.proto, append(slices.Clone(out[i].ports), d.ports...))
			}
			if len(ps) <= MaxPortsPerRule {
				out[i].ports = ps
				continue
			}
		}
		idx[k] = len(out)
		out = append(out, d)
	}
	return out
}

func mergeSamePorts(rules []draft) []draft {
	type key struct {
		proto uint8
		ports string
	}
	idx := map[key]int{}
	out := rules[:0]
	for _, d := range rules {
		k := key{d.proto, portsKey(d.ports)}
		if i, ok := idx[k]; ok {
			out[i].srcs = normSrcs(append(slices.Clone(out[i].srcs), d.srcs...))
			continue
		}
		idx[k] = len(out)
		out = append(out, d)
	}
	return out
}

func subsume(rules []draft) []draft {
	for j := range rules {
		for i := range rules {
			if i == j || len(rules[j].srcs) == 0 || !covers(&rules[i], &rules[j]) || covers(&rules[j], &rules[i]) {
				continue
			}
			// Each draft owns its srcs, so they can be filtered in place.
			rules[j].srcs = slices.DeleteFunc(rules[j].srcs, func(s netip.Prefix) bool {
				return containsPrefix(rules[i].srcs, s)
			})
		}
	}
	return slices.DeleteFunc(rules, func(d draft) bool { return len(d.srcs) == 0 })
}

// TestResult is the outcome of one embedded test. Got is "accept", "deny",
// "mixed" (an icmp test whose ICMP and ICMPv6 packets differ) or empty when
// the test could not run; then Err says why (an unknown node, say).
type TestResult struct {
	Index int
	Test  Test
	Got   string
	Pass  bool
	Err   string
}

// RunTests runs the embedded tests against the mesh's members. node:NAME
// must name exactly one member; tag:NAME stands for a member carrying only
// that tag; an IP address stands for the member holding it (with only that
// address), or as a source for any sender with that address.
func (p *Policy) RunTests(members []Member) []TestResult {
	r, err := p.resolved()
	if err != nil {
		out := make([]TestResult, 0, len(p.Tests))
		for i, t := range p.Tests {
			out = append(out, TestResult{Index: i, Test: t, Err: err.Error()})
		}
		return out
	}
	byName := map[string][]int{}
	byAddr := map[netip.Addr]int{}
	for i, m := range members {
		byName[m.Name] = append(byName[m.Name], i)
		for _, a := range m.Addrs {
			byAddr[a] = i
		}
	}
	find := func(e endpoint, isSrc bool) (Member, error) {
		switch e.kind {
		case endNode:
			switch ix := byName[e.name]; len(ix) {
			case 0:
				return Member{}, fmt.Errorf("unknown node %q", e.name)
			case 1:
				return members[ix[0]], nil
			default:
				return Member{}, fmt.Errorf("%d members are named %q", len(ix), e.name)
			}
		case endTag:
			return Member{Tags: []string{e.name}}, nil
		}
		if i, ok := byAddr[e.addr]; ok {
			m := members[i]
			m.Addrs = []netip.Addr{e.addr}
			return m, nil
		}
		if isSrc {
			return Member{Addrs: []netip.Addr{e.addr}}, nil
		}
		return Member{}, fmt.Errorf("no member has address %s", e.addr)
	}
	out := make([]TestResult, 0, len(r.tests))
	for i, t := range r.tests {
		res := TestResult{Index: i, Test: t.t}
		src, err := find(t.src, true)
		if err == nil {
			var dst Member
			if dst, err = find(t.dst, false); err == nil {
				accepted := 0
				for _, proto := range t.protos {
					if r.check(&src, &dst, proto, t.port) {
						accepted++
					}
				}
				switch accepted {
				case len(t.protos):
					res.Got = Accept
				case 0:
					res.Got = Deny
				default:
					res.Got = Mixed
				}
				res.Pass = res.Got == t.t.Want
			}
		}
		if err != nil {
			res.Err = err.Error()
		}
		out = append(out, res)
	}
	return out
}

// Validate is what the control plane runs before accepting a policy: every
// check of Parse (again, in case the Policy was built or changed in code) and
// every embedded test passing against members. Failing tests are joined
// errors that match ErrTestFailed.
func (p *Policy) Validate(members []Member) error {
	if p == nil {
		return errors.New("policy: nil policy")
	}
	b, err := p.Marshal()
	if err != nil {
		return err
	}
	if len(b) > MaxPolicySize {
		return fmt.Errorf("policy: %d bytes, at most %d", len(b), MaxPolicySize)
	}
	r, err := p.resolve()
	if err != nil {
		return err
	}
	q := *p
	q.r = r
	var errs []error
	for _, res := range q.RunTests(members) {
		if res.Pass {
			continue
		}
		t := res.Test
		what := fmt.Sprintf("%s → %s %s", t.Src, t.Dst, t.Proto)
		if t.Port != 0 {
			what += fmt.Sprintf("/%d", t.Port)
		}
		if res.Err != "" {
			errs = append(errs, fmt.Errorf("policy: tests[%d]: %s: %s: %w", res.Index, what, res.Err, ErrTestFailed))
		} else {
			errs = append(errs, fmt.Errorf("policy: tests[%d]: %s: want %s, got %s: %w", res.Index, what, t.Want, res.Got, ErrTestFailed))
		}
	}
	return errors.Join(errs...)
}
