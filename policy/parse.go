package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// nameRE is the syntax of node names and tags in certificates (see identity);
// group and host names follow it too.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

const nameSyntax = "want 1-63 of a-z, 0-9, '-', not starting or ending with '-'"

// resolved is a policy with every name looked up: what Check, Compile and
// RunTests work from.
type resolved struct {
	acls  []racl
	tests []rtest
}

type racl struct {
	protos []uint8 // {0}: any; icmp is {1, 58}
	src    *selector
	dst    []rdst
}

type rdst struct {
	sel   *selector
	ports []PortRange // nil: any port (with any protocol: every packet)
}

// selector is a flattened set of selectors: groups are expanded, hosts are
// prefixes. It is never modified once built, so groups share it.
type selector struct {
	all      bool
	nodes    map[string]struct{}
	tags     map[string]struct{}
	prefixes []netip.Prefix
}

var everyone = &selector{all: true}

// add merges o into s.
func (s *selector) add(o *selector) {
	s.all = s.all || o.all
	if len(o.nodes) > 0 && s.nodes == nil {
		s.nodes = map[string]struct{}{}
	}
	maps.Copy(s.nodes, o.nodes)
	if len(o.tags) > 0 && s.tags == nil {
		s.tags = map[string]struct{}{}
	}
	maps.Copy(s.tags, o.tags)
	s.prefixes = append(s.prefixes, o.prefixes...)
}

type endpointKind uint8

const (
	endNode endpointKind = iota + 1
	endTag
	endAddr
)

// endpoint is a test's source or destination.
type endpoint struct {
	kind endpointKind
	name string // node name or tag
	addr netip.Addr
}

type rtest struct {
	t        Test // as written, for results
	src, dst endpoint
	protos   []uint8
	port     uint16
	want     bool
}

type resolver struct {
	p      *Policy
	hosts  map[string]netip.Prefix
	groups map[string]*selector
	work   int // selector entries copied by union, against maxExpansion
}

// maxExpansion bounds the entries copied while expanding groups and merging
// sources: a large group named by many groups or rules would otherwise cost
// time and memory quadratic in the policy's size.
const maxExpansion = 1 << 21

// union adds o to s, within the expansion budget.
func (rs *resolver) union(s, o *selector) error {
	rs.work += 1 + len(o.nodes) + len(o.tags) + len(o.prefixes)
	if rs.work > maxExpansion {
		return fmt.Errorf("groups expand to more than %d selectors", maxExpansion)
	}
	s.add(o)
	return nil
}

// resolve checks the whole policy and looks every name up.
func (p *Policy) resolve() (*resolved, error) {
	if len(p.ACLs) > MaxACLs {
		return nil, fmt.Errorf("policy: %d acls, at most %d", len(p.ACLs), MaxACLs)
	}
	if len(p.Tests) > MaxTests {
		return nil, fmt.Errorf("policy: %d tests, at most %d", len(p.Tests), MaxTests)
	}
	if len(p.Groups)+len(p.Hosts) > MaxNames {
		return nil, fmt.Errorf("policy: %d groups and hosts, at most %d", len(p.Groups)+len(p.Hosts), MaxNames)
	}
	rs := &resolver{p: p, hosts: map[string]netip.Prefix{}, groups: map[string]*selector{}}
	for _, name := range slices.Sorted(maps.Keys(p.Hosts)) {
		if !nameRE.MatchString(name) {
			return nil, fmt.Errorf("policy: hosts[%q]: bad host name: %s", name, nameSyntax)
		}
		pfx, err := parsePrefix(p.Hosts[name])
		if err != nil {
			return nil, fmt.Errorf("policy: hosts[%q]: %w", name, err)
		}
		rs.hosts[name] = pfx
	}
	if err := rs.resolveGroups(); err != nil {
		return nil, err
	}
	r := &resolved{acls: make([]racl, 0, len(p.ACLs)), tests: make([]rtest, 0, len(p.Tests))}
	for i, a := range p.ACLs {
		ra, err := rs.acl(a)
		if err != nil {
			return nil, fmt.Errorf("policy: acls[%d]%w", i, err)
		}
		r.acls = append(r.acls, ra)
	}
	for i, t := range p.Tests {
		rt, err := rs.test(t)
		if err != nil {
			return nil, fmt.Errorf("policy: tests[%d]%w", i, err)
		}
		r.tests = append(r.tests, rt)
	}
	return r, nil
}

// resolveGroups checks group names, finds cycles among groups, then expands
// every group after the groups it contains.
func (rs *resolver) resolveGroups() error {
	names := slices.Sorted(maps.Keys(rs.p.Groups))
	for _, name := range names {
		g, ok := strings.CutPrefix(name, "group:")
		if !ok || !nameRE.MatchString(g) {
			return fmt.Errorf("policy: groups[%q]: bad group name: want \"group:\" and 1-63 of a-z, 0-9, '-', not starting or ending with '-'", name)
		}
	}
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order, path []string
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			i := slices.Index(path, name)
			return fmt.Errorf("policy: groups: cycle %s", strings.Join(append(path[i:], name), " → "))
		}
		state[name] = visiting
		path = append(path, name)
		for _, m := range rs.p.Groups[name] {
			if _, ok := rs.p.Groups[m]; ok && strings.HasPrefix(m, "group:") {
				if err := visit(m); err != nil {
					return err
				}
			}
		}
		path = path[:len(path)-1]
		state[name] = done
		order = append(order, name)
		return nil
	}
	for _, name := range names {
		if err := visit(name); err != nil {
			return err
		}
	}
	for _, name := range order { // members' groups come first
		sel := &selector{}
		for i, m := range rs.p.Groups[name] {
			s, err := rs.selector(m)
			if err == nil {
				err = rs.union(sel, s)
			}
			if err != nil {
				return fmt.Errorf("policy: groups[%q][%d]: %w", name, i, err)
			}
		}
		sel.prefixes = normSrcs(sel.prefixes) // one copy of each, for the groups that include this one
		rs.groups[name] = sel
	}
	return nil
}

// acl resolves one rule. Its errors start with the place inside the rule
// (".dst[0]: ..."), for the caller to prefix with the rule's index.
func (rs *resolver) acl(a ACL) (racl, error) {
	var ra racl
	if a.Action != Accept {
		return ra, fmt.Errorf(".action: %q: only \"accept\" rules exist (anything not accepted is denied)", a.Action)
	}
	protos, err := parseProto(a.Proto)
	if err != nil {
		return ra, fmt.Errorf(".proto: %w", err)
	}
	ra.protos = protos
	if len(a.Src) == 0 {
		return ra, errors.New(".src: empty: want at least one selector (\"*\" for every member)")
	}
	if len(a.Dst) == 0 {
		return ra, errors.New(".dst: empty: want at least one SELECTOR:PORTS (\"*:*\" for everything)")
	}
	for i, s := range a.Src {
		sel, err := rs.selector(s)
		if err != nil {
			if kind, rest, _ := strings.Cut(s, ":"); strings.Contains(rest, ":") && (kind == "node" || kind == "tag" || kind == "group") || kind == "*" {
				err = fmt.Errorf("%w (ports belong on destinations)", err)
			}
			return ra, fmt.Errorf(".src[%d]: %w", i, err)
		}
		if len(a.Src) == 1 {
			ra.src = sel // shared, never modified
			continue
		}
		if ra.src == nil {
			ra.src = &selector{}
		}
		if err := rs.union(ra.src, sel); err != nil {
			return ra, fmt.Errorf(".src[%d]: %w", i, err)
		}
	}
	if len(a.Src) > 1 {
		ra.src.prefixes = normSrcs(ra.src.prefixes)
	}
	nports := 0
	for i, d := range a.Dst {
		rd, err := rs.dst(d)
		if err != nil {
			return ra, fmt.Errorf(".dst[%d]: %w", i, err)
		}
		if rd.ports != nil && !slices.ContainsFunc(protos, hasPorts) {
			return ra, fmt.Errorf(".dst[%d]: %q: proto %s has no ports: write %s", i, d, a.Proto, strings.TrimSuffix(d, portsOf(d))+"*")
		}
		nports += len(rd.ports)
		ra.dst = append(ra.dst, rd)
	}
	if nports > MaxPortsPerRule {
		return ra, fmt.Errorf(".dst: %d port ranges, at most %d", nports, MaxPortsPerRule)
	}
	return ra, nil
}

// portsOf returns the PORTS part of SELECTOR:PORTS.
func portsOf(d string) string {
	_, ports, _ := splitDst(d)
	return ports
}

// selector resolves one selector (no ports).
func (rs *resolver) selector(s string) (*selector, error) {
	kind, name, ok := strings.Cut(s, ":")
	if ok {
		switch kind {
		case "node", "tag":
			if !nameRE.MatchString(name) {
				return nil, fmt.Errorf("%q: bad %s name: %s", s, kind, nameSyntax)
			}
			set := map[string]struct{}{name: {}}
			if kind == "node" {
				return &selector{nodes: set}, nil
			}
			return &selector{tags: set}, nil
		case "group":
			if g, ok := rs.groups[s]; ok {
				return g, nil
			}
			if _, ok := rs.p.Groups[s]; ok {
				return nil, fmt.Errorf("internal error: group %q used before it is resolved", s) // resolveGroups orders them
			}
			return nil, fmt.Errorf("%q: unknown group (define it under \"groups\")", s)
		case "autogroup":
			return nil, fmt.Errorf("%q: autogroups are not supported: use \"*\" for every member", s)
		}
	}
	if s == "*" {
		return everyone, nil
	}
	if strings.Contains(s, "@") {
		return nil, fmt.Errorf("%q: users are not selectors here: select nodes, tags or groups", s)
	}
	if p, ok := rs.hosts[s]; ok {
		return &selector{prefixes: []netip.Prefix{p}}, nil
	}
	if strings.ContainsAny(s, ".:/") {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, err
		}
		return &selector{prefixes: []netip.Prefix{p}}, nil
	}
	return nil, fmt.Errorf("%q: unknown selector: want *, node:NAME, tag:NAME, group:NAME, a name from \"hosts\" or an IP prefix", s)
}

// dst resolves SELECTOR:PORTS.
func (rs *resolver) dst(d string) (rdst, error) {
	s, ps, ok := splitDst(d)
	if !ok {
		if strings.HasPrefix(d, "[") {
			return rdst{}, fmt.Errorf("%q: want [ADDR]:PORTS", d)
		}
		return rdst{}, fmt.Errorf("%q: no ports: want SELECTOR:PORTS, as %s:*", d, d)
	}
	ports, err := parsePorts(ps)
	if err != nil {
		if _, perr := parsePrefix(d); perr == nil || s == "node" || s == "tag" || s == "group" {
			return rdst{}, fmt.Errorf("%q: no ports: want SELECTOR:PORTS, as %s:* (IPv6: [ADDR]:PORTS)", d, d)
		}
		return rdst{}, fmt.Errorf("%q: %w", d, err)
	}
	sel, err := rs.selector(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(d); aerr == nil && a.Is6() {
			return rdst{}, fmt.Errorf("%q: no ports: write an IPv6 destination as [ADDR]:PORTS, as [%s]:*", d, d)
		}
		return rdst{}, err
	}
	return rdst{sel: sel, ports: ports}, nil
}

// splitDst splits SELECTOR:PORTS at the last colon, or after "[IPv6]".
func splitDst(d string) (sel, ports string, ok bool) {
	if rest, ok := strings.CutPrefix(d, "["); ok {
		sel, ports, ok = strings.Cut(rest, "]:")
		return sel, ports, ok
	}
	i := strings.LastIndexByte(d, ':')
	if i < 0 {
		return "", "", false
	}
	return d[:i], d[i+1:], true
}

// parsePorts reads "*", "22", "80-89" or a comma list of those; nil means any.
func parsePorts(s string) ([]PortRange, error) {
	if s == "*" {
		return nil, nil
	}
	if s == "" {
		return nil, errors.New("no ports after ':': want *, a port, FIRST-LAST or a comma list")
	}
	var out []PortRange
	for part := range strings.SplitSeq(s, ",") {
		first, last, isRange := strings.Cut(part, "-")
		a, err := parsePort(first)
		if err != nil {
			return nil, fmt.Errorf("ports %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = parsePort(last); err != nil {
				return nil, fmt.Errorf("ports %q: %w", s, err)
			}
			if a > b {
				return nil, fmt.Errorf("ports %q: range %d-%d is reversed", s, a, b)
			}
		}
		out = append(out, PortRange{First: a, Last: b})
		if len(out) > MaxPortsPerRule {
			return nil, fmt.Errorf("ports %q: more than %d ranges", s, MaxPortsPerRule)
		}
	}
	return out, nil
}

// parsePort reads a decimal port without sign or leading zeros.
func parsePort(s string) (uint16, error) {
	if s == "*" {
		return 0, errors.New("* can not be part of a list or range")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad port %q: want a number 0-65535", s)
	}
	return uint16(n), nil
}

// protoNames are the protocols known by name. icmp means both ICMP and ICMPv6
// because a rule is about what a member may do, not which IP version it uses.
var protoNames = map[string][]uint8{
	"tcp":  {ProtoTCP},
	"udp":  {ProtoUDP},
	"sctp": {ProtoSCTP},
	"icmp": {ProtoICMP, ProtoICMPv6},
	"igmp": {2},
	"gre":  {47},
	"esp":  {50},
	"ah":   {51},
}

// parseProto reads a protocol name or number; "" means any ({0}).
func parseProto(s string) ([]uint8, error) {
	if s == "" {
		return []uint8{0}, nil
	}
	if p, ok := protoNames[s]; ok {
		return p, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || s[0] == '0' {
		if s == "0" {
			return nil, errors.New("\"0\": leave proto out to mean any protocol")
		}
		return nil, fmt.Errorf("%q: want tcp, udp, icmp, sctp, igmp, gre, esp, ah or a protocol number 1-255", s)
	}
	return []uint8{uint8(n)}, nil
}

// parsePrefix reads an IP address (a host prefix) or a CIDR prefix, which must
// not have host bits set: "10.1.2.3/24" is more likely a mistake than a wish.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q: bad IP prefix", s)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q: IPv4-mapped IPv6 prefix: write the IPv4 prefix", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("%q: host bits set: did you mean %s?", s, m)
		}
		return p, nil
	}
	a, err := parseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: bad IP address", s)
	}
	if a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%q: IPv4-mapped IPv6 address: write the IPv4 address", s)
	}
	return a, nil
}

// test resolves one embedded test; its errors start with the field.
func (rs *resolver) test(t Test) (rtest, error) {
	rt := rtest{t: t}
	var err error
	if rt.src, err = rs.endpoint(t.Src); err != nil {
		return rt, fmt.Errorf(".src: %w", err)
	}
	if rt.dst, err = rs.endpoint(t.Dst); err != nil {
		return rt, fmt.Errorf(".dst: %w", err)
	}
	if t.Proto == "" {
		return rt, errors.New(".proto: missing: a test is one packet, with one protocol")
	}
	if rt.protos, err = parseProto(t.Proto); err != nil {
		return rt, fmt.Errorf(".proto: %w", err)
	}
	rt.port = t.Port
	switch ported := hasPorts(rt.protos[0]); {
	case ported && t.Port == 0:
		return rt, fmt.Errorf(".port: missing: proto %s has ports", t.Proto)
	case !ported && t.Port != 0:
		return rt, fmt.Errorf(".port: %d: proto %s has no ports", t.Port, t.Proto)
	}
	switch t.Want {
	case Accept:
		rt.want = true
	case Deny:
	default:
		return rt, fmt.Errorf(".want: %q: want \"accept\" or \"deny\"", t.Want)
	}
	return rt, nil
}

// endpoint resolves a test's node:NAME, tag:NAME, IP address or host alias of
// one address.
func (rs *resolver) endpoint(s string) (endpoint, error) {
	if kind, name, ok := strings.Cut(s, ":"); ok && (kind == "node" || kind == "tag") {
		if !nameRE.MatchString(name) {
			return endpoint{}, fmt.Errorf("%q: bad %s name: %s", s, kind, nameSyntax)
		}
		if kind == "node" {
			return endpoint{kind: endNode, name: name}, nil
		}
		return endpoint{kind: endTag, name: name}, nil
	}
	if p, ok := rs.hosts[s]; ok {
		if !p.IsSingleIP() {
			return endpoint{}, fmt.Errorf("%q: host %s is a prefix, a test needs one address", s, p)
		}
		return endpoint{kind: endAddr, addr: p.Addr()}, nil
	}
	a, err := parseAddr(s)
	if err != nil {
		return endpoint{}, fmt.Errorf("%q: want node:NAME, tag:NAME or an IP address", s)
	}
	return endpoint{kind: endAddr, addr: a}, nil
}

// JSON strictness beyond encoding/json.

// shape is what the strict JSON check expects at a place in the document.
type shape uint8

const (
	freeShape  shape = iota // anything; keys still unique
	topShape                // the policy object
	namesShape              // groups, hosts: free keys
	aclsShape
	aclShape
	testsShape
	testShape
)

var shapeFields = map[shape][]string{
	topShape:  {"groups", "hosts", "acls", "tests"},
	aclShape:  {"action", "src", "dst", "proto"},
	testShape: {"src", "dst", "proto", "port", "want"},
}

// maxDepth is far deeper than a policy needs (acls[0].dst[0] is depth 4) and
// keeps a hostile document from recursing without bound.
const maxDepth = 16

// checkJSON rejects what encoding/json would silently accept in a policy: a
// duplicate key (the last would win, so a second "group:admins" would
// replace the first unseen), a field name that matches only when case is
// ignored, a top level that is not an object, and data after it.
func checkJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	if tok != json.Delim('{') {
		return errors.New("policy: want a JSON object")
	}
	if err := walkJSON(dec, tok, "", topShape, 1); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("policy: data after the policy object")
	}
	return nil
}

func walkJSON(dec *json.Decoder, tok json.Token, path string, sh shape, depth int) error {
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth > maxDepth {
		return fmt.Errorf("policy: %s: nested deeper than %d", path, maxDepth)
	}
	switch d {
	case '[':
		elem := freeShape
		switch sh {
		case aclsShape:
			elem = aclShape
		case testsShape:
			elem = testShape
		}
		for i := 0; dec.More(); i++ {
			tok, err := dec.Token()
			if err != nil {
				return jsonError(err)
			}
			if err := walkJSON(dec, tok, fmt.Sprintf("%s[%d]", path, i), elem, depth+1); err != nil {
				return err
			}
		}
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return jsonError(err)
			}
			key, _ := tok.(string)
			where := "policy: " + path + ": "
			if path == "" {
				where = "policy: "
			}
			if seen[key] {
				return fmt.Errorf("%sduplicate key %q", where, key)
			}
			seen[key] = true
			child, kpath := freeShape, path+"."+key
			switch sh {
			case topShape, aclShape, testShape:
				if !slices.Contains(shapeFields[sh], key) {
					return fmt.Errorf("%sunknown field %q (want one of %s)", where, key, strings.Join(shapeFields[sh], ", "))
				}
				if sh == topShape {
					kpath = key
					child = map[string]shape{"groups": namesShape, "hosts": namesShape, "acls": aclsShape, "tests": testsShape}[key]
				}
			case namesShape:
				kpath = fmt.Sprintf("%s[%q]", path, key)
			}
			if tok, err = dec.Token(); err != nil {
				return jsonError(err)
			}
			if err := walkJSON(dec, tok, kpath, child, depth+1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("policy: %s: unexpected %q", path, d)
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return jsonError(err)
	}
	return nil
}

// jsonError turns encoding/json's errors into ones that name the field
// without Go type names.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "policy"
		}
		return fmt.Errorf("policy: %s: got JSON %s, want %s", field, te.Value, jsonType(te.Type))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("policy: invalid JSON at byte %d: %v", se.Offset, se)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("policy: invalid JSON: unexpected end")
	}
	return fmt.Errorf("policy: %w", err)
}

func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Uint16:
		return "a number 0-65535"
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}
