package control

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"slices"

	"github.com/danielgtaylor/huma/v2"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/store"
)

// The node-facing API (package api is its contract).

func (s *Server) registerNodeAPI(hapi huma.API) {
	register(s, hapi, opDef{ID: "enroll", Method: http.MethodPost, Path: api.PathEnroll, Tag: "Node API",
		Summary: "Register a node with a join token and its public keys (rate limited per address)",
		Desc: "The node proves it holds its signing key with a hybrid signature (label x0t-enroll-v1) over " +
			"api.EnrollProof(token, name, keys). Repeating an enrollment with the same keys returns the node's state.",
		Errors: []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict},
	}, s.enrollNode)
	register(s, hapi, opDef{ID: "node-status", Method: http.MethodGet, Path: api.PathNode, Tag: "Node API", Node: true,
		Summary: "The calling node's status, CA and certificate (polled while pending)"}, s.nodeStatus)
	register(s, hapi, opDef{ID: "node-heartbeat", Method: http.MethodPost, Path: api.PathHeartbeat, Tag: "Node API", Node: true,
		Summary: "Report endpoints, health and per-peer traffic", MaxBody: maxHeartbeat, Status: http.StatusNoContent}, s.nodeHeartbeat)
	register(s, hapi, opDef{ID: "node-renew", Method: http.MethodPost, Path: api.PathRenew, Tag: "Node API", Node: true,
		Summary: "Issue a fresh certificate for the calling node"}, s.nodeRenew)
	s.registerNetmap(hapi)
}

type enrollInput struct {
	Body api.EnrollRequest
}

type nodeResponse struct{ Body api.NodeResponse }

func (s *Server) enrollNode(ctx context.Context, in *enrollInput) (_ *nodeResponse, err error) {
	ctx, et := s.traceEnroll(ctx)
	defer func() { et.end(err) }()
	if !s.enroll.allow(clientIP(requestFrom(ctx))) {
		return nil, huma.Error429TooManyRequests("too many enrollments from this address; retry later")
	}
	req := &in.Body
	if len(req.Token) > 128 || len(req.Name) > 255 {
		return nil, invalid("body", "token or name too long")
	}
	keys := req.Keys.Identity()
	if err := keys.Validate(); err != nil {
		return nil, invalid("body.keys", "%v", err)
	}
	eps, err := validEndpoints("body.endpoints", req.Endpoints)
	if err != nil {
		return nil, err
	}
	et.stepTo(stepVerifyProof)
	vk, err := identity.ParseVerifyingKey(req.Keys.Signing)
	if err != nil {
		return nil, invalid("body.keys.signing", "%v", err)
	}
	if err := vk.Verify(api.LabelEnroll, api.EnrollProof(req.Token, req.Name, req.Keys), req.Proof); err != nil {
		return nil, huma.Error401Unauthorized("the proof does not verify under the submitted signing key")
	}
	id := keys.ID().String()
	et.set(attrNodeID.String(id))
	var resp api.NodeResponse
	_, err = s.store.Update(ctx, "node:"+id, func(tx store.Tx) error {
		et.stepTo(stepTokenCheck)
		tok, err := tx.GetByKey(ctx, tokenKey(hashSecret(req.Token)))
		if errors.Is(err, store.ErrNotFound) || (err == nil && tok.Kind != kindToken) {
			return huma.Error401Unauthorized("invalid join token")
		}
		if err != nil {
			return err
		}
		td, err := decode[tokenData](tok)
		if err != nil {
			return err
		}
		m, err := tx.Get(ctx, kindMesh, tok.Parent)
		if err != nil {
			return err
		}
		md, err := decode[meshData](m)
		if err != nil {
			return err
		}
		et.set(attrTokenID.String(tok.ID), attrMeshID.String(m.ID), attrMeshName.String(md.Name))
		// The same keys again (a retry after a lost answer): the node's state.
		if old, err := tx.Get(ctx, kindNode, id); err == nil {
			od, err := decode[nodeData](old)
			if err != nil {
				return err
			}
			if old.Parent != m.ID || !slices.Equal(od.Keys.Signing, req.Keys.Signing) {
				return conflict("a node with these keys is already enrolled")
			}
			if od.Status == api.StatusRevoked {
				return forbidden("this node has been revoked")
			}
			resp = nodeResponse_(id, md, od)
			et.succeeded(od.Status, true)
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if _, err := tx.Get(ctx, kindRevocation, id); err == nil {
			return forbidden("this node has been revoked")
		}
		if err := td.valid(s.now()); err != nil {
			return huma.Error401Unauthorized(err.Error())
		}
		et.stepTo(stepAllocate)
		name, err := uniqueName(ctx, tx, m.ID, normName(req.Name))
		if err != nil {
			return err
		}
		pfx, err := netip.ParsePrefix(md.IPv4Prefix)
		if err != nil {
			return err
		}
		addr, err := allocate(ctx, tx, m.ID, pfx)
		if err != nil {
			return err
		}
		d := &nodeData{Name: name, Status: api.StatusPending, Tags: td.Tags, Keys: req.Keys, IPv4: addr, Endpoints: eps, Token: tok.ID}
		if ca, err := identity.ParseCertificate(md.CACert); err == nil {
			d.IPv6 = identity.MeshIPv6(ca, addr).Addr()
		}
		if td.AutoApprove {
			now := s.now().UTC()
			d.Status, d.ApprovedAt = api.StatusApproved, &now
			et.stepTo(stepCertIssue)
			if err := s.issue(m, md, id, d); err != nil {
				return err
			}
		}
		et.stepTo(stepStoreAppend) // ends when the commit returns
		td.Uses++
		te, err := entity(kindToken, tok.ID, tok.Org, tok.Parent, td, tok.Keys...)
		if err != nil {
			return err
		}
		if err := tx.Put(ctx, "token.use", te); err != nil {
			return err
		}
		ne, err := entity(kindNode, id, m.Org, m.ID, d, nodeNameKey(m.ID, name), ipKey(m.ID, addr))
		if err != nil {
			return err
		}
		if err := tx.Put(ctx, "node.enroll", ne); err != nil {
			return err
		}
		resp = nodeResponse_(id, md, d)
		et.succeeded(d.Status, false)
		return nil
	})
	if err != nil {
		return nil, s.storeErr(ctx, err, "a node with these keys")
	}
	s.log.InfoContext(ctx, "node enrolled", "node", id, "mesh", resp.Mesh, "status", resp.Status)
	return &nodeResponse{resp}, nil
}

func nodeResponse_(id string, md *meshData, d *nodeData) api.NodeResponse {
	r := api.NodeResponse{NodeID: id, Status: d.Status, Mesh: md.Name, CACert: md.CACert}
	if d.Status == api.StatusApproved {
		r.Cert = d.Cert
	}
	return r
}

// meshOfNode reads a node's mesh.
func (s *Server) meshOfNode(ctx context.Context, r store.Reader, node *store.Entity) (*store.Entity, *meshData, error) {
	m, err := r.Get(ctx, kindMesh, node.Parent)
	if err != nil {
		return nil, nil, err
	}
	md, err := decode[meshData](m)
	return m, md, err
}

func (s *Server) nodeStatus(ctx context.Context, _ *struct{}) (*nodeResponse, error) {
	node, nd, err := s.authNode(ctx, nil)
	if err != nil {
		return nil, err
	}
	_, md, err := s.meshOfNode(ctx, s.store, node)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &nodeResponse{nodeResponse_(node.ID, md, nd)}, nil
}

type heartbeatInput struct {
	RawBody []byte
	Body    api.Heartbeat
}

// Heartbeat bounds.
const (
	maxHeartbeatPeers     = 10000
	maxHeartbeatReasons   = 32
	maxHeartbeatIncidents = 256
)

func (s *Server) nodeHeartbeat(ctx context.Context, in *heartbeatInput) (*struct{}, error) {
	node, nd, err := s.authNode(ctx, in.RawBody)
	if err != nil {
		return nil, err
	}
	hb := &in.Body
	switch hb.Health {
	case "", "healthy", "degraded", "critical":
	default:
		return nil, invalid("body.health", "health must be healthy, degraded or critical")
	}
	if len(hb.Peers) > maxHeartbeatPeers || len(hb.Reasons) > maxHeartbeatReasons || len(hb.Incidents) > maxHeartbeatIncidents || hb.Uptime < 0 {
		return nil, invalid("body", "heartbeat out of bounds")
	}
	for i, p := range hb.Peers {
		if !isNodeID(p.ID) {
			return nil, invalid("body.peers", "peer %d: id must be a hex node ID", i)
		}
	}
	eps, err := validEndpoints("body.endpoints", hb.Endpoints)
	if err != nil {
		return nil, err
	}
	s.telemetry.record(node.Org, node.Parent, node.ID, hb, in.RawBody)
	// Endpoints are what peers dial: a change is a change of the netmap.
	if len(eps) > 0 && !slices.Equal(eps, nd.Endpoints) {
		_, err := s.store.Update(ctx, "node:"+node.ID, func(tx store.Tx) error {
			e, err := tx.Get(ctx, kindNode, node.ID)
			if err != nil {
				return err
			}
			d, err := decode[nodeData](e)
			if err != nil {
				return err
			}
			d.Endpoints = eps
			ne, err := entity(kindNode, e.ID, e.Org, e.Parent, d, e.Keys...)
			if err != nil {
				return err
			}
			return tx.Put(ctx, "node.endpoints", ne)
		})
		if err != nil {
			return nil, s.internal(ctx, err)
		}
	}
	return nil, nil
}

func (s *Server) nodeRenew(ctx context.Context, _ *struct{}) (*nodeResponse, error) {
	node, nd, err := s.authNode(ctx, nil)
	if err != nil {
		return nil, err
	}
	if nd.Status != api.StatusApproved {
		return nil, conflict("the node is %s; only approved nodes get certificates", nd.Status)
	}
	if !s.renew.allow(node.ID) {
		return nil, huma.Error429TooManyRequests("certificate renewed too often; retry later")
	}
	var resp api.NodeResponse
	_, err = s.store.Update(ctx, "node:"+node.ID, func(tx store.Tx) error {
		e, err := tx.Get(ctx, kindNode, node.ID)
		if err != nil {
			return err
		}
		d, err := decode[nodeData](e)
		if err != nil {
			return err
		}
		if d.Status != api.StatusApproved {
			return conflict("the node is %s", d.Status)
		}
		m, md, err := s.meshOfNode(ctx, tx, e)
		if err != nil {
			return err
		}
		if err := s.issue(m, md, e.ID, d); err != nil {
			return err
		}
		ne, err := entity(kindNode, e.ID, e.Org, e.Parent, d, e.Keys...)
		if err != nil {
			return err
		}
		resp = nodeResponse_(e.ID, md, d)
		return tx.Put(ctx, "node.renew", ne)
	})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &nodeResponse{resp}, nil
}
