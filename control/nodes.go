package control

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/store"
)

// NodePath is the {mesh}/{node} path parameters.
type NodePath struct {
	MeshPath
	Node string `path:"node" maxLength:"63" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" doc:"Node name or ID."`
}

func (s *Server) registerNodes(hapi huma.API) {
	register(s, hapi, opDef{ID: "list-nodes", Method: http.MethodGet, Path: "/api/v1/meshes/{mesh}/nodes", Tag: "Nodes",
		Summary: "List a mesh's nodes", Role: roleViewer}, s.listNodes)
	register(s, hapi, opDef{ID: "get-node", Method: http.MethodGet, Path: "/api/v1/meshes/{mesh}/nodes/{node}", Tag: "Nodes",
		Summary: "Get a node", Role: roleViewer}, s.getNode)
	register(s, hapi, opDef{ID: "update-node", Method: http.MethodPatch, Path: "/api/v1/meshes/{mesh}/nodes/{node}", Tag: "Nodes",
		Summary: "Rename a node (members) or replace its tags (admins); reissues its certificate", Role: roleMember}, s.updateNode)
	register(s, hapi, opDef{ID: "approve-node", Method: http.MethodPost, Path: "/api/v1/meshes/{mesh}/nodes/{node}/approve", Tag: "Nodes",
		Summary: "Approve a pending node and issue its certificate", Role: roleAdmin}, s.approveNode)
	register(s, hapi, opDef{ID: "revoke-node", Method: http.MethodPost, Path: "/api/v1/meshes/{mesh}/nodes/{node}/revoke", Tag: "Nodes",
		Summary: "Revoke a node: every peer refuses it within seconds, and it is refused here", Role: roleAdmin}, s.revokeNode)
	register(s, hapi, opDef{ID: "delete-node", Method: http.MethodDelete, Path: "/api/v1/meshes/{mesh}/nodes/{node}", Tag: "Nodes",
		Summary: "Delete a node; a certified node stays revoked until its certificate expires", Role: roleAdmin,
		Status: http.StatusNoContent}, s.deleteNode)
	register(s, hapi, opDef{ID: "get-node-telemetry", Method: http.MethodGet, Path: "/api/v1/meshes/{mesh}/nodes/{node}/telemetry",
		Tag: "Nodes", Summary: "Get a node's last heartbeat (telemetry, not part of the audit log)", Role: roleViewer}, s.getNodeTelemetry)
}

func (s *Server) nodeView(e *store.Entity, mesh string, d *nodeData) apitypes.Node {
	n := apitypes.Node{ID: e.ID, Name: d.Name, Mesh: mesh, Status: d.Status, Tags: d.Tags, IPv4: d.IPv4.String(),
		Endpoints: d.Endpoints, TokenID: d.Token, CreatedAt: e.Created, ApprovedAt: d.ApprovedAt, RevokedAt: d.RevokedAt,
		CertNotAfter: d.NotAfter, Online: s.hub.isOnline(e.ID)}
	if d.IPv6.IsValid() {
		n.IPv6 = d.IPv6.String()
	}
	if n.Tags == nil {
		n.Tags = []string{}
	}
	if n.Endpoints == nil {
		n.Endpoints = []string{}
	}
	if t := s.telemetry.get(e.ID); t != nil {
		seen := t.Time
		n.LastSeen, n.Health, n.RxBytes, n.TxBytes = &seen, t.Health, t.Rx, t.Tx
	}
	return n
}

// nodeOf resolves a node of a mesh of the caller's organization by name or ID.
func (s *Server) nodeOf(ctx context.Context, r store.Reader, p *principal, mesh, ref string) (*store.Entity, *nodeData, *store.Entity, *meshData, error) {
	m, md, err := s.meshOf(ctx, r, p, mesh)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	e, err := r.GetByKey(ctx, nodeNameKey(m.ID, ref))
	if errors.Is(err, store.ErrNotFound) && len(ref) == 2*identity.NodeIDSize {
		e, err = r.Get(ctx, kindNode, ref)
	}
	if errors.Is(err, store.ErrNotFound) || (err == nil && (e.Kind != kindNode || e.Org != p.org.ID || e.Parent != m.ID)) {
		return nil, nil, nil, nil, notFound("node")
	}
	if err != nil {
		return nil, nil, nil, nil, err
	}
	d, err := decode[nodeData](e)
	return e, d, m, md, err
}

func (s *Server) listNodes(ctx context.Context, in *struct {
	MeshPath
	PageParams
	Status string `query:"status" enum:"pending,approved,revoked," doc:"Only nodes in this state."`
}) (*body[apitypes.NodeList], error) {
	p := principalFrom(ctx)
	m, _, err := s.meshOf(ctx, s.store, p, in.Mesh)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	out := apitypes.NodeList{Items: []apitypes.Node{}}
	after := in.After
	for len(out.Items) < in.Limit {
		list, err := s.store.List(ctx, store.Query{Kind: kindNode, Org: p.org.ID, Parent: m.ID, After: after, Limit: in.Limit + 1})
		if err != nil {
			return nil, s.internal(ctx, err)
		}
		more := len(list) > in.Limit
		for _, e := range list[:min(len(list), in.Limit)] {
			after = e.ID
			d, err := decode[nodeData](e)
			if err != nil {
				return nil, s.internal(ctx, err)
			}
			if in.Status != "" && d.Status != in.Status {
				continue
			}
			out.Items = append(out.Items, s.nodeView(e, in.Mesh, d))
			if len(out.Items) == in.Limit {
				break
			}
		}
		if !more {
			after = ""
			break
		}
	}
	out.Next = after
	return &body[apitypes.NodeList]{out}, nil
}

func (s *Server) getNode(ctx context.Context, in *NodePath) (*body[apitypes.Node], error) {
	p := principalFrom(ctx)
	e, d, _, _, err := s.nodeOf(ctx, s.store, p, in.Mesh, in.Node)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &body[apitypes.Node]{s.nodeView(e, in.Mesh, d)}, nil
}

func (s *Server) getNodeTelemetry(ctx context.Context, in *NodePath) (*body[apitypes.NodeTelemetry], error) {
	p := principalFrom(ctx)
	e, _, _, _, err := s.nodeOf(ctx, s.store, p, in.Mesh, in.Node)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	t := s.telemetry.get(e.ID)
	if t == nil {
		return nil, notFound("telemetry")
	}
	return &body[apitypes.NodeTelemetry]{apitypes.NodeTelemetry{Node: e.ID, Time: t.Time, Report: t.Raw, Online: s.hub.isOnline(e.ID)}}, nil
}

// mutateNode runs fn on a node inside a transaction and stores the result.
func (s *Server) mutateNode(ctx context.Context, actor string, p *principal, mesh, ref, action string,
	fn func(tx store.Tx, e *store.Entity, d *nodeData, m *store.Entity, md *meshData) error) (apitypes.Node, error) {
	var out apitypes.Node
	_, err := s.store.Update(ctx, actor, func(tx store.Tx) error {
		e, d, m, md, err := s.nodeOf(ctx, tx, p, mesh, ref)
		if err != nil {
			return err
		}
		if err := fn(tx, e, d, m, md); err != nil {
			return err
		}
		ne, err := entity(kindNode, e.ID, e.Org, e.Parent, d, nodeNameKey(m.ID, d.Name), ipKey(m.ID, d.IPv4))
		if err != nil {
			return err
		}
		if err := tx.Put(ctx, action, ne); err != nil {
			return err
		}
		out = s.nodeView(e, mesh, d)
		return nil
	})
	if err != nil {
		return out, s.storeErr(ctx, err, "a node with this name")
	}
	return out, nil
}

func (s *Server) updateNode(ctx context.Context, in *struct {
	NodePath
	Body apitypes.UpdateNodeRequest
}) (*body[apitypes.Node], error) {
	p := principalFrom(ctx)
	var tags []string
	if in.Body.Tags != nil {
		if p.role < roleAdmin {
			return nil, forbidden("only admins change tags: they decide what the ACL policy lets a node reach")
		}
		var err error
		if tags, err = normTags("body.tags", *in.Body.Tags); err != nil {
			return nil, err
		}
	}
	n, err := s.mutateNode(ctx, p.actor(), p, in.Mesh, in.Node, "node.update", func(tx store.Tx, e *store.Entity, d *nodeData, m *store.Entity, md *meshData) error {
		if d.Status == api.StatusRevoked {
			return conflict("a revoked node can not be changed")
		}
		if in.Body.Name != nil {
			d.Name = *in.Body.Name
		}
		if in.Body.Tags != nil {
			d.Tags = tags
		}
		if d.Status == api.StatusApproved {
			return s.issue(m, md, e.ID, d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &body[apitypes.Node]{n}, nil
}

func (s *Server) approveNode(ctx context.Context, in *NodePath) (*body[apitypes.Node], error) {
	p := principalFrom(ctx)
	n, err := s.mutateNode(ctx, p.actor(), p, in.Mesh, in.Node, "node.approve", func(tx store.Tx, e *store.Entity, d *nodeData, m *store.Entity, md *meshData) error {
		switch d.Status {
		case api.StatusRevoked:
			return conflict("a revoked node can not be approved; delete it and enroll it with new keys")
		case api.StatusApproved:
			return nil // idempotent
		}
		now := s.now().UTC()
		d.Status, d.ApprovedAt = api.StatusApproved, &now
		return s.issue(m, md, e.ID, d)
	})
	if err != nil {
		return nil, err
	}
	return &body[apitypes.Node]{n}, nil
}

func (s *Server) revokeNode(ctx context.Context, in *NodePath) (*body[apitypes.Node], error) {
	p := principalFrom(ctx)
	n, err := s.mutateNode(ctx, p.actor(), p, in.Mesh, in.Node, "node.revoke", func(tx store.Tx, e *store.Entity, d *nodeData, m *store.Entity, md *meshData) error {
		if d.Status != api.StatusRevoked {
			now := s.now().UTC()
			d.Status, d.RevokedAt = api.StatusRevoked, &now
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &body[apitypes.Node]{n}, nil
}

func (s *Server) deleteNode(ctx context.Context, in *NodePath) (*struct{}, error) {
	p := principalFrom(ctx)
	var id string
	_, err := s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		e, d, m, _, err := s.nodeOf(ctx, tx, p, in.Mesh, in.Node)
		if err != nil {
			return err
		}
		id = e.ID
		if err := tx.Delete(ctx, "node.delete", kindNode, e.ID); err != nil {
			return err
		}
		// A certificate outlives the node record: peers must keep refusing it.
		if d.NotAfter != nil && d.NotAfter.After(s.now()) {
			r, err := entity(kindRevocation, e.ID, e.Org, m.ID, revocationData{Name: d.Name, IPv4: d.IPv4, NotAfter: *d.NotAfter},
				ipKey(m.ID, d.IPv4))
			if err != nil {
				return err
			}
			return tx.Put(ctx, "node.revoke", r)
		}
		return nil
	})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	s.telemetry.forget(id)
	return nil, nil
}

// issue signs a certificate for a node with the mesh CA.
func (s *Server) issue(m *store.Entity, md *meshData, id string, d *nodeData) error {
	ca, key, err := s.caOf(m, md)
	if err != nil {
		return err
	}
	pfx, err := netip.ParsePrefix(md.IPv4Prefix)
	if err != nil {
		return fmt.Errorf("control: mesh %s prefix: %w", md.Name, err)
	}
	cert, err := identity.IssueNode(ca, key, identity.NodeTemplate{Name: d.Name, Tags: d.Tags,
		Addrs: []netip.Prefix{netip.PrefixFrom(d.IPv4, pfx.Bits())}, Validity: time.Duration(md.CertValidity) * time.Second,
		Keys: d.Keys.Identity()}, s.now())
	if err != nil {
		return fmt.Errorf("control: issue certificate for %s: %w", id, err)
	}
	if cert.ID().String() != id {
		return errors.New("control: certificate ID does not match the node")
	}
	na := cert.NotAfter
	d.Cert, d.NotAfter = cert.Bytes(), &na
	if v6, ok := cert.Addr(true); ok {
		d.IPv6 = v6.Addr()
	}
	return nil
}

// allocate picks the next free IPv4 address of a mesh: one past the highest
// taken, or the lowest free one once the top is reached. Addresses of
// deleted nodes whose certificates are still valid stay taken.
func allocate(ctx context.Context, tx store.Tx, meshID string, prefix netip.Prefix) (netip.Addr, error) {
	first := prefix.Addr().Next() // skip the network address
	last := lastAddr(prefix)      // the broadcast address is not used
	top, err := tx.MaxKey(ctx, ipPrefixKey(meshID))
	if err != nil {
		return netip.Addr{}, err
	}
	if top != "" {
		if a, ok := ipFromKey(meshID, top); ok && prefix.Contains(a) {
			if n := a.Next(); n.Less(last) {
				return n, nil
			}
		}
	}
	for a, tries := first, 0; a.Less(last) && tries < 100000; a, tries = a.Next(), tries+1 {
		if _, err := tx.GetByKey(ctx, ipKey(meshID, a)); errors.Is(err, store.ErrNotFound) {
			return a, nil
		} else if err != nil {
			return netip.Addr{}, err
		}
	}
	return netip.Addr{}, conflict("the mesh's address space %s is full", prefix)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// uniqueName returns name, or name-2, name-3, ... if taken in the mesh (as
// Tailscale does for machines with the same host name).
func uniqueName(ctx context.Context, tx store.Tx, meshID, name string) (string, error) {
	for i := 1; i <= 1000; i++ {
		cand := name
		if i > 1 {
			suffix := "-" + strconv.Itoa(i)
			cand = name[:min(len(name), identity.MaxNameLen-len(suffix))] + suffix
		}
		if _, err := tx.GetByKey(ctx, nodeNameKey(meshID, cand)); errors.Is(err, store.ErrNotFound) {
			return cand, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", conflict("too many nodes named %q", name)
}

// normName turns a host name into a node name: lower case, other characters
// as '-', at most 63 characters, "node" if nothing is left.
func normName(raw string) string {
	b := make([]byte, 0, len(raw))
	for _, c := range []byte(raw) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b = append(b, c)
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		default:
			if len(b) > 0 && b[len(b)-1] != '-' {
				b = append(b, '-')
			}
		}
		if len(b) >= identity.MaxNameLen {
			break
		}
	}
	for len(b) > 0 && b[len(b)-1] == '-' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return "node"
	}
	return string(b)
}

// validEndpoints checks UDP endpoints reported by a node.
func validEndpoints(field string, eps []string) ([]string, error) {
	if len(eps) > 16 {
		return nil, invalid(field, "at most 16 endpoints")
	}
	out := make([]string, 0, len(eps))
	for _, e := range eps {
		ap, err := netip.ParseAddrPort(e)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			return nil, invalid(field, "endpoint %q: want ip:port", e)
		}
		if s := ap.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func isNodeID(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == identity.NodeIDSize
}
