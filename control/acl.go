package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/policy"
	"github.com/x0tta6bl4/x0t/store"
)

func (s *Server) registerACL(hapi huma.API) {
	register(s, hapi, opDef{ID: "get-acl", Method: http.MethodGet, Path: "/api/v1/meshes/{mesh}/acl", Tag: "ACL",
		Summary: "Get a mesh's ACL policy (with an ETag for a safe update)", Role: roleViewer}, s.getACL)
	register(s, hapi, opDef{ID: "set-acl", Method: http.MethodPut, Path: "/api/v1/meshes/{mesh}/acl", Tag: "ACL",
		Summary: "Replace a mesh's ACL policy; refused unless it parses and its embedded tests pass",
		Role:    roleAdmin, MaxBody: maxPolicyBody, ParsedBody: true}, s.setACL)
	register(s, hapi, opDef{ID: "validate-acl", Method: http.MethodPost, Path: "/api/v1/meshes/{mesh}/acl/validate", Tag: "ACL",
		Summary: "Check a policy against the mesh's nodes without storing it", Role: roleViewer, MaxBody: maxPolicyBody, ParsedBody: true}, s.validateACL)
	register(s, hapi, opDef{ID: "test-acl", Method: http.MethodPost, Path: "/api/v1/meshes/{mesh}/acl/test", Tag: "ACL",
		Summary: "Run the policy's embedded tests, or check one packet (src, dst, proto, port)", Role: roleViewer,
		MaxBody: maxPolicyBody}, s.testACL)
}

// policyBody is a policy as a request or response body. policy.Policy
// decodes strictly (its UnmarshalJSON is policy.Parse), so huma's schema
// check is skipped for it: the parser is the authority and its errors name
// the offending place.
type policyBody struct {
	ETag string `header:"ETag"`
	Body policy.Policy
}

// policyOf reads a mesh's policy entity.
func (s *Server) policyOf(ctx context.Context, r store.Reader, meshID string) (*store.Entity, *policy.Policy, error) {
	e, err := r.Get(ctx, kindPolicy, meshID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, policy.Default(), nil
	}
	if err != nil {
		return nil, nil, err
	}
	d, err := decode[policyData](e)
	if err != nil {
		return nil, nil, err
	}
	p, err := policy.Parse([]byte(d.Text))
	if err != nil {
		return nil, nil, fmt.Errorf("control: stored policy of mesh %s: %w", meshID, err)
	}
	return e, p, nil
}

func etag(e *store.Entity) string {
	if e == nil {
		return `"0"`
	}
	return `"` + strconv.FormatUint(e.Version, 10) + `"`
}

// members lists a mesh's nodes as policy members: approved and pending
// ones, so that a policy's tests may name a node before it is approved.
func (s *Server) members(ctx context.Context, r store.Reader, meshID string) ([]policy.Member, error) {
	list, err := r.List(ctx, store.Query{Kind: kindNode, Parent: meshID})
	if err != nil {
		return nil, err
	}
	out := make([]policy.Member, 0, len(list))
	for _, e := range list {
		d, err := decode[nodeData](e)
		if err != nil {
			return nil, err
		}
		if d.Status == api.StatusRevoked {
			continue
		}
		out = append(out, policy.Member{ID: e.ID, Name: d.Name, Tags: d.Tags, Addrs: addrs(d)})
	}
	return out, nil
}

func (s *Server) getACL(ctx context.Context, in *MeshPath) (*policyBody, error) {
	p := principalFrom(ctx)
	m, _, err := s.meshOf(ctx, s.store, p, in.Mesh)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	e, pol, err := s.policyOf(ctx, s.store, m.ID)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &policyBody{ETag: etag(e), Body: *pol}, nil
}

func testResults(res []policy.TestResult) ([]apitypes.ACLTestResult, bool) {
	out := make([]apitypes.ACLTestResult, 0, len(res))
	pass := true
	for _, r := range res {
		out = append(out, apitypes.ACLTestResult{Src: r.Test.Src, Dst: r.Test.Dst, Proto: r.Test.Proto, Port: r.Test.Port,
			Want: r.Test.Want, Got: r.Got, Pass: r.Pass, Error: r.Err})
		pass = pass && r.Pass
	}
	return out, pass
}

type setACLInput struct {
	MeshPath
	IfMatch string `header:"If-Match" maxLength:"32" doc:"The ETag of the policy this one replaces; refused with 412 if it changed since."`
	Body    policy.Policy
}

func (s *Server) setACL(ctx context.Context, in *setACLInput) (*policyBody, error) {
	p := principalFrom(ctx)
	text, err := in.Body.Marshal()
	if err != nil {
		return nil, invalid("body", "%v", err)
	}
	var tag string
	_, err = s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		m, _, err := s.meshOf(ctx, tx, p, in.Mesh)
		if err != nil {
			return err
		}
		old, _, err := s.policyOf(ctx, tx, m.ID)
		if err != nil {
			return err
		}
		if in.IfMatch != "" && in.IfMatch != etag(old) {
			return huma.Error412PreconditionFailed("the policy changed since " + in.IfMatch + "; it is now " + etag(old))
		}
		members, err := s.members(ctx, tx, m.ID)
		if err != nil {
			return err
		}
		if err := in.Body.Validate(members); err != nil {
			res, _ := testResults(in.Body.RunTests(members))
			var details []error
			for _, r := range res {
				if !r.Pass {
					details = append(details, &huma.ErrorDetail{Location: "body.tests",
						Message: fmt.Sprintf("%s -> %s %s/%d: want %s, got %s %s", r.Src, r.Dst, r.Proto, r.Port, r.Want, r.Got, r.Error)})
				}
			}
			return huma.Error422UnprocessableEntity("policy refused: "+err.Error(), details...)
		}
		e, err := entity(kindPolicy, m.ID, m.Org, m.ID, policyData{Text: string(text)})
		if err != nil {
			return err
		}
		if err := tx.Put(ctx, "acl.set", e); err != nil {
			return err
		}
		after, err := tx.Get(ctx, kindPolicy, m.ID)
		if err != nil {
			return err
		}
		tag = etag(after)
		return nil
	})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &policyBody{ETag: tag, Body: in.Body}, nil
}

func (s *Server) validateACL(ctx context.Context, in *struct {
	MeshPath
	Body policy.Policy
}) (*body[apitypes.ACLValidateResponse], error) {
	p := principalFrom(ctx)
	m, _, err := s.meshOf(ctx, s.store, p, in.Mesh)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	members, err := s.members(ctx, s.store, m.ID)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	out := apitypes.ACLValidateResponse{Valid: true}
	out.Results, _ = testResults(in.Body.RunTests(members))
	if err := in.Body.Validate(members); err != nil {
		out.Valid, out.Error = false, err.Error()
	}
	return &body[apitypes.ACLValidateResponse]{out}, nil
}

func (s *Server) testACL(ctx context.Context, in *struct {
	MeshPath
	Body apitypes.ACLTestRequest
}) (*body[apitypes.ACLTestResponse], error) {
	p := principalFrom(ctx)
	m, _, err := s.meshOf(ctx, s.store, p, in.Mesh)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	var pol *policy.Policy
	if len(in.Body.Policy) > 0 && string(in.Body.Policy) != "null" {
		if pol, err = policy.Parse(in.Body.Policy); err != nil {
			return nil, invalid("body.policy", "%v", err)
		}
	} else if _, pol, err = s.policyOf(ctx, s.store, m.ID); err != nil {
		return nil, s.internal(ctx, err)
	}
	members, err := s.members(ctx, s.store, m.ID)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	b := in.Body
	if b.Src == "" && b.Dst == "" {
		out := apitypes.ACLTestResponse{}
		out.Results, out.Pass = testResults(pol.RunTests(members))
		return &body[apitypes.ACLTestResponse]{out}, nil
	}
	if b.Src == "" || b.Dst == "" {
		return nil, invalid("body", "src and dst go together")
	}
	src, err := findMember(members, b.Src, true)
	if err != nil {
		return nil, invalid("body.src", "%v", err)
	}
	dst, err := findMember(members, b.Dst, false)
	if err != nil {
		return nil, invalid("body.dst", "%v", err)
	}
	protoName := b.Proto
	if protoName == "" {
		protoName = "tcp"
	}
	proto, err := parseProto(protoName)
	if err != nil {
		return nil, invalid("body.proto", "%v", err)
	}
	got := policy.Deny
	if pol.Check(src, dst, proto, b.Port) {
		got = policy.Accept
	}
	res := apitypes.ACLTestResult{Src: b.Src, Dst: b.Dst, Proto: protoName, Port: b.Port, Got: got, Pass: got == policy.Accept}
	return &body[apitypes.ACLTestResponse]{apitypes.ACLTestResponse{Pass: res.Pass, Results: []apitypes.ACLTestResult{res}}}, nil
}

// findMember resolves a node name, node ID or overlay address; as a source
// an address of no member stands for any sender with it.
func findMember(members []policy.Member, ref string, isSrc bool) (policy.Member, error) {
	for _, m := range members {
		if m.Name == ref || m.ID == ref {
			return m, nil
		}
	}
	a, err := netip.ParseAddr(ref)
	if err != nil {
		return policy.Member{}, fmt.Errorf("no node named %q", ref)
	}
	for _, m := range members {
		for _, ma := range m.Addrs {
			if ma == a {
				m.Addrs = []netip.Addr{a}
				return m, nil
			}
		}
	}
	if isSrc {
		return policy.Member{Addrs: []netip.Addr{a}}, nil
	}
	return policy.Member{}, fmt.Errorf("no node has address %s", a)
}

func parseProto(s string) (uint8, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return policy.ProtoTCP, nil
	case "udp":
		return policy.ProtoUDP, nil
	case "icmp":
		return policy.ProtoICMP, nil
	case "icmpv6", "ipv6-icmp":
		return policy.ProtoICMPv6, nil
	case "sctp":
		return policy.ProtoSCTP, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("protocol %q: want tcp, udp, icmp, sctp or a number", s)
	}
	return uint8(n), nil
}
