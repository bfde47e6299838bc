// Package policy is the mesh access-control language (ACLs), its compiler to
// per-node rules, and the matcher a node applies to the packets it receives.
//
// The control plane parses an owner's Policy (Parse, Validate), compiles it
// for each node (Compile) and sends the Rules in the node's signed netmap; the
// node compiles them once more into a Filter and asks it about every packet
// it receives. Check interprets the policy directly and is the reference the
// compiler is tested against. The language is described in docs/policy.md.
package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Rules are the compiled access rules one node enforces on the packets it
// receives: a packet is delivered only if some rule allows it (default deny).
// The control plane compiles them per node from the mesh policy and sends them
// in the signed netmap; rules are addresses, not names, because the tunnel
// already guarantees that a packet's source address belongs to the peer that
// sent it.
type Rules struct {
	Allow []Rule `json:"allow"`
}

// Rule allows packets from any of Srcs with protocol Proto to any of Ports.
type Rule struct {
	Srcs  []netip.Prefix `json:"srcs"`
	Proto uint8          `json:"proto,omitempty"` // IANA protocol number; 0 means any
	Ports []PortRange    `json:"ports,omitempty"` // destination ports; none means any
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	First uint16 `json:"first"`
	Last  uint16 `json:"last"`
}

// AllowAll is the rule set of a node that accepts everything from anyone.
func AllowAll() Rules {
	return Rules{Allow: []Rule{{Srcs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}}}
}

// Limits keep compiled rules bounded.
const (
	MaxRules         = 10000
	MaxSrcsPerRule   = 100000
	MaxPortsPerRule  = 1000
	ProtoTCP         = 6
	ProtoUDP         = 17
	ProtoICMP        = 1
	ProtoICMPv6      = 58
	ProtoSCTP        = 132
	maxRulesPrefixes = 1 << 20
)

// Validate checks bounds and well-formedness.
func (r Rules) Validate() error {
	if len(r.Allow) > MaxRules {
		return fmt.Errorf("policy: %d rules, at most %d", len(r.Allow), MaxRules)
	}
	total := 0
	for i, rule := range r.Allow {
		if len(rule.Srcs) == 0 {
			return fmt.Errorf("policy: rule %d has no sources", i)
		}
		if len(rule.Srcs) > MaxSrcsPerRule || len(rule.Ports) > MaxPortsPerRule {
			return fmt.Errorf("policy: rule %d is too large", i)
		}
		total += len(rule.Srcs)
		for _, p := range rule.Srcs {
			if !p.IsValid() {
				return fmt.Errorf("policy: rule %d: invalid source prefix", i)
			}
		}
		for _, pr := range rule.Ports {
			if pr.First > pr.Last {
				return fmt.Errorf("policy: rule %d: port range %d-%d is reversed", i, pr.First, pr.Last)
			}
		}
		if len(rule.Ports) > 0 && !hasPorts(rule.Proto) {
			return fmt.Errorf("policy: rule %d: ports given for protocol %d, which has none", i, rule.Proto)
		}
	}
	if total > maxRulesPrefixes {
		return errors.New("policy: rules hold too many source prefixes")
	}
	return nil
}

// hasPorts reports whether proto carries ports (0, any, may).
func hasPorts(proto uint8) bool {
	return proto == 0 || proto == ProtoTCP || proto == ProtoUDP || proto == ProtoSCTP
}

// Equal reports whether two rule sets are identical.
func (r Rules) Equal(o Rules) bool {
	return slices.EqualFunc(r.Allow, o.Allow, func(a, b Rule) bool {
		return a.Proto == b.Proto && slices.Equal(a.Srcs, b.Srcs) && slices.Equal(a.Ports, b.Ports)
	})
}

// Filter is Rules compiled for matching packets without allocating.
type Filter struct {
	hosts map[netip.Addr][]int // host sources (/32, /128) → rule indexes
	wide  []wideSrc            // other prefixes
	rules []Rule
}

type wideSrc struct {
	prefix netip.Prefix
	rule   int
}

// Compile builds the matcher for r. r must be valid.
func (r Rules) Compile() *Filter {
	f := &Filter{hosts: map[netip.Addr][]int{}, rules: r.Allow}
	for i, rule := range r.Allow {
		for _, p := range rule.Srcs {
			p = p.Masked()
			if p.IsSingleIP() {
				f.hosts[p.Addr()] = append(f.hosts[p.Addr()], i)
			} else {
				f.wide = append(f.wide, wideSrc{p, i})
			}
		}
	}
	return f
}

// Allow reports whether a packet from src with protocol proto to destination
// port port (0 for protocols without ports) is allowed. A nil Filter allows
// nothing. It does not allocate: it runs for every received packet.
func (f *Filter) Allow(src netip.Addr, proto uint8, port uint16) bool {
	if f == nil {
		return false
	}
	for _, i := range f.hosts[src] {
		if f.rules[i].matches(proto, port) {
			return true
		}
	}
	for _, w := range f.wide {
		if w.prefix.Contains(src) && f.rules[w.rule].matches(proto, port) {
			return true
		}
	}
	return false
}

func (r *Rule) matches(proto uint8, port uint16) bool {
	if r.Proto != 0 && r.Proto != proto {
		return false
	}
	return portsMatch(r.Ports, proto, port)
}

// portsMatch is the port half of a rule's match, shared by the compiled
// matcher and the policy interpreter so that the two can not drift apart: no
// ranges means any packet of the protocol; ranges match only packets of a
// protocol that has ports.
func portsMatch(ports []PortRange, proto uint8, port uint16) bool {
	if len(ports) == 0 {
		return true
	}
	if !hasPorts(proto) {
		return false
	}
	for _, pr := range ports {
		if port >= pr.First && port <= pr.Last {
			return true
		}
	}
	return false
}
