package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Policy is a mesh's access policy as its owner writes it, in the spirit of
// Tailscale's ACLs: named groups and host aliases, accept rules from sources
// to destinations, and tests that must pass before the control plane accepts
// the policy. There are only accept rules: whatever no rule accepts is denied.
//
// Parse and Default return a Policy ready for use. Treat it as immutable:
// Check, Compile and RunTests use the form resolved when it was parsed (to
// change a policy, edit a copy and Parse its Marshal output). A Policy built as
// a literal works too, but is resolved again on every call, and if it is
// invalid Check and Compile deny everything.
type Policy struct {
	// Groups name sets of selectors: "group:NAME" → members, each a node,
	// tag, group, host alias, IP prefix or "*".
	Groups map[string][]string `json:"groups,omitempty"`
	// Hosts name IP addresses or prefixes: NAME → "10.1.0.0/24". A host is
	// used as a selector by its bare name.
	Hosts map[string]string `json:"hosts,omitempty"`
	// ACLs are the accept rules, in no particular order.
	ACLs []ACL `json:"acls"`
	// Tests are expectations checked by Validate and RunTests.
	Tests []Test `json:"tests,omitempty"`

	r *resolved // set by Parse and Default
}

// ACL accepts packets from any of Src to any of Dst with protocol Proto.
type ACL struct {
	Action string   `json:"action"`          // "accept", the only action
	Src    []string `json:"src"`             // selectors
	Dst    []string `json:"dst"`             // SELECTOR:PORTS
	Proto  string   `json:"proto,omitempty"` // tcp, udp, icmp, sctp, a number; empty means any
}

// Test states what should happen to one packet: from Src to Dst with protocol
// Proto and destination port Port, Want is "accept" or "deny". Src and Dst are
// node:NAME (an enrolled node), tag:NAME (a node carrying only that tag) or an
// IP address (the node holding it; as a source, also any other address).
type Test struct {
	Src   string `json:"src"`
	Dst   string `json:"dst"`
	Proto string `json:"proto"`
	Port  uint16 `json:"port,omitempty"`
	Want  string `json:"want"`
}

// Limits keep parsing and compiling bounded.
const (
	MaxPolicySize = 1 << 20 // bytes of JSON
	MaxACLs       = 4000    // each compiles to at most two rules (icmp), within MaxRules
	MaxTests      = 1000
	MaxNames      = 10000 // groups plus hosts
)

// Verdicts of a test.
const (
	Accept = "accept"
	Deny   = "deny"
	Mixed  = "mixed" // an icmp test whose ICMP and ICMPv6 packets were treated differently
)

// ErrTestFailed marks the errors Validate returns for failing policy tests.
var ErrTestFailed = errors.New("policy test failed")

// policyJSON is Policy without its methods, so that encoding/json does not
// recurse into MarshalJSON and UnmarshalJSON.
type policyJSON struct {
	Groups map[string][]string `json:"groups,omitempty"`
	Hosts  map[string]string   `json:"hosts,omitempty"`
	ACLs   []ACL               `json:"acls"`
	Tests  []Test              `json:"tests,omitempty"`
}

// Parse reads a policy strictly: unknown or duplicate fields, bad selectors,
// ports or protocols, unknown groups or hosts, group cycles and malformed
// tests are errors that name the offending place (acls[2].dst[0]). It does not
// run the tests: they need the mesh's members (see Validate).
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxPolicySize {
		return nil, fmt.Errorf("policy: %d bytes, at most %d", len(data), MaxPolicySize)
	}
	if err := checkJSON(data); err != nil {
		return nil, err
	}
	var pj policyJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pj); err != nil {
		return nil, jsonError(err)
	}
	p := &Policy{Groups: pj.Groups, Hosts: pj.Hosts, ACLs: pj.ACLs, Tests: pj.Tests}
	p.normalize()
	r, err := p.resolve()
	if err != nil {
		return nil, err
	}
	p.r = r
	return p, nil
}

// normalize gives equal policies one representation, so that a policy and its
// re-parsed Marshal output compare equal.
func (p *Policy) normalize() {
	if len(p.Groups) == 0 {
		p.Groups = nil
	}
	for k, v := range p.Groups {
		if v == nil {
			p.Groups[k] = []string{}
		}
	}
	if len(p.Hosts) == 0 {
		p.Hosts = nil
	}
	if len(p.ACLs) == 0 {
		p.ACLs = nil
	}
	if len(p.Tests) == 0 {
		p.Tests = nil
	}
}

// Default is the policy a new mesh starts with: every member may reach every
// member on every protocol and port, as in Tailscale. It compiles to AllowAll.
func Default() *Policy {
	p := &Policy{ACLs: []ACL{{Action: Accept, Src: []string{"*"}, Dst: []string{"*:*"}}}}
	r, err := p.resolve()
	if err != nil {
		panic(err) // the default policy is a constant
	}
	p.r = r
	return p
}

// Marshal returns the canonical JSON of the policy: fixed field order, sorted
// group and host names, two-space indentation and a final newline, so that
// equal policies store and audit as equal bytes.
func (p *Policy) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(p.wire()); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return buf.Bytes(), nil
}

// MarshalJSON encodes the policy as Marshal does (compacted when embedded), so
// that a Policy inside an API message has the same shape as a stored one.
func (p Policy) MarshalJSON() ([]byte, error) {
	return json.Marshal(p.wire())
}

// UnmarshalJSON parses strictly, as Parse does, so that a Policy decoded as
// part of a larger message is as checked as one parsed on its own.
func (p *Policy) UnmarshalJSON(data []byte) error {
	q, err := Parse(data)
	if err != nil {
		return err
	}
	*p = *q
	return nil
}

func (p *Policy) wire() policyJSON {
	pj := policyJSON{Groups: p.Groups, Hosts: p.Hosts, ACLs: p.ACLs, Tests: p.Tests}
	if pj.ACLs == nil {
		pj.ACLs = []ACL{} // "acls": [] rather than null
	}
	for _, v := range p.Groups {
		if v == nil { // a group with no members is [], not null
			pj.Groups = make(map[string][]string, len(p.Groups))
			for k, v := range p.Groups {
				if v == nil {
					v = []string{}
				}
				pj.Groups[k] = v
			}
			break
		}
	}
	return pj
}

// resolved returns the parsed form, resolving it now for a Policy that was
// not built by Parse or Default.
func (p *Policy) resolved() (*resolved, error) {
	if p == nil {
		return nil, errors.New("policy: nil policy")
	}
	if p.r != nil {
		return p.r, nil
	}
	return p.resolve()
}
