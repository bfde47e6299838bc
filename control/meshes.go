package control

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/policy"
	"github.com/x0tta6bl4/x0t/store"
)

// Mesh defaults and bounds.
const (
	defaultIPv4Prefix   = "100.64.0.0/10"
	defaultCertValidity = 30 * 24 * time.Hour
	minCertValidity     = 10 * time.Minute
	maxCertValidity     = 365 * 24 * time.Hour
	caValidity          = 10 * 365 * 24 * time.Hour
)

// MeshPath is the {mesh} path parameter. The parameter structs are exported
// because huma reads parameters only from exported embedded structs.
type MeshPath struct {
	Mesh string `path:"mesh" maxLength:"63" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" doc:"Mesh name."`
}

func (s *Server) registerMeshes(hapi huma.API) {
	register(s, hapi, opDef{ID: "list-meshes", Method: http.MethodGet, Path: "/api/v1/meshes", Tag: "Meshes",
		Summary: "List meshes", Role: roleViewer}, s.listMeshes)
	register(s, hapi, opDef{ID: "create-mesh", Method: http.MethodPost, Path: "/api/v1/meshes", Tag: "Meshes",
		Summary: "Create a mesh with its own hybrid CA", Role: roleAdmin, Status: http.StatusCreated}, s.createMesh)
	register(s, hapi, opDef{ID: "get-mesh", Method: http.MethodGet, Path: "/api/v1/meshes/{mesh}", Tag: "Meshes",
		Summary: "Get a mesh", Role: roleViewer}, s.getMesh)
	register(s, hapi, opDef{ID: "update-mesh", Method: http.MethodPatch, Path: "/api/v1/meshes/{mesh}", Tag: "Meshes",
		Summary: "Change a mesh's description, PQ profile, transports or certificate lifetime", Role: roleAdmin}, s.updateMesh)
	register(s, hapi, opDef{ID: "delete-mesh", Method: http.MethodDelete, Path: "/api/v1/meshes/{mesh}", Tag: "Meshes",
		Summary: "Delete a mesh with its nodes, tokens and policy", Role: roleAdmin, Status: http.StatusNoContent}, s.deleteMesh)
}

// meshOf resolves a mesh name in the caller's organization.
func (s *Server) meshOf(ctx context.Context, r store.Reader, p *principal, name string) (*store.Entity, *meshData, error) {
	e, err := r.GetByKey(ctx, meshKey(p.org.ID, name))
	if errors.Is(err, store.ErrNotFound) || (err == nil && (e.Kind != kindMesh || e.Org != p.org.ID)) {
		return nil, nil, notFound("mesh")
	}
	if err != nil {
		return nil, nil, err
	}
	d, err := decode[meshData](e)
	if err != nil {
		return nil, nil, err
	}
	return e, d, nil
}

func (s *Server) meshView(ctx context.Context, e *store.Entity, d *meshData) (apitypes.Mesh, error) {
	m := apitypes.Mesh{ID: e.ID, Name: d.Name, Description: d.Description, IPv4Prefix: d.IPv4Prefix, PQProfile: d.PQProfile,
		Transports: d.Transports, CertValidity: time.Duration(d.CertValidity * int64(time.Second)).String(),
		TrustDomain: d.TrustDomain, CACert: d.CACert, CreatedAt: e.Created, UpdatedAt: e.Updated}
	if ca, err := identity.ParseCertificate(d.CACert); err == nil {
		m.IPv6Prefix = identity.MeshULAPrefix(ca).String()
		m.CAFingerprint = hex.EncodeToString(ca.Issuer[:])
	}
	n, err := s.store.Count(ctx, store.Query{Kind: kindNode, Parent: e.ID})
	if err != nil {
		return m, err
	}
	m.Nodes = n
	return m, nil
}

func (s *Server) listMeshes(ctx context.Context, in *struct{ PageParams }) (*body[apitypes.MeshList], error) {
	p := principalFrom(ctx)
	items, next, err := listPage(ctx, s, store.Query{Kind: kindMesh, Org: p.org.ID}, in.PageParams,
		func(e *store.Entity, d *meshData) (apitypes.Mesh, error) { return s.meshView(ctx, e, d) })
	if err != nil {
		return nil, err
	}
	return &body[apitypes.MeshList]{apitypes.MeshList{Items: items, Next: next}}, nil
}

func parseValidity(field, v string) (int64, error) {
	if v == "" {
		return int64(defaultCertValidity / time.Second), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < minCertValidity || d > maxCertValidity {
		return 0, invalid(field, "must be a duration from %s to %s", minCertValidity, maxCertValidity)
	}
	return int64(d / time.Second), nil
}

func (s *Server) createMesh(ctx context.Context, in *body[apitypes.CreateMeshRequest]) (*body[apitypes.Mesh], error) {
	p := principalFrom(ctx)
	req := in.Body
	d := &meshData{Name: req.Name, Description: req.Description, IPv4Prefix: req.IPv4Prefix, PQProfile: req.PQProfile,
		Transports: req.Transports, TrustDomain: req.TrustDomain}
	if d.IPv4Prefix == "" {
		d.IPv4Prefix = defaultIPv4Prefix
	}
	pfx, err := netip.ParsePrefix(d.IPv4Prefix)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() < 8 || pfx.Bits() > 30 || pfx.Masked() != pfx {
		return nil, invalid("body.ipv4_prefix", "must be an IPv4 network prefix (as 100.64.0.0/10) of length 8 to 30")
	}
	if d.PQProfile == "" {
		d.PQProfile = apitypes.PQHybrid768
	}
	if len(d.Transports) == 0 {
		d.Transports = []string{"udp"}
	}
	if d.TrustDomain == "" {
		d.TrustDomain = identity.DefaultTrustDomain
	}
	if d.CertValidity, err = parseValidity("body.cert_validity", req.CertValidity); err != nil {
		return nil, err
	}
	id := store.NewID("msh")
	ca, caKey, err := identity.NewCA(d.Name, d.TrustDomain, caValidity, s.now())
	if err != nil {
		return nil, invalid("body", "%v", err)
	}
	d.CACert = ca.Bytes()
	d.CAKey = s.sealer.seal(identity.MarshalCAKey(caKey), id)
	e, err := entity(kindMesh, id, p.org.ID, "", d, meshKey(p.org.ID, d.Name))
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	def, err := policy.Default().Marshal()
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	pe, err := entity(kindPolicy, id, p.org.ID, id, policyData{Text: string(def)})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	_, err = s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		if err := tx.Put(ctx, "mesh.create", e); err != nil {
			return err
		}
		return tx.Put(ctx, "acl.set", pe)
	})
	if err != nil {
		return nil, s.storeErr(ctx, err, "a mesh with this name")
	}
	e.Created, e.Updated = s.now().UTC(), s.now().UTC()
	m, err := s.meshView(ctx, e, d)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &body[apitypes.Mesh]{m}, nil
}

func (s *Server) getMesh(ctx context.Context, in *MeshPath) (*body[apitypes.Mesh], error) {
	p := principalFrom(ctx)
	e, d, err := s.meshOf(ctx, s.store, p, in.Mesh)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	m, err := s.meshView(ctx, e, d)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &body[apitypes.Mesh]{m}, nil
}

func (s *Server) updateMesh(ctx context.Context, in *struct {
	MeshPath
	Body apitypes.UpdateMeshRequest
}) (*body[apitypes.Mesh], error) {
	p := principalFrom(ctx)
	var e *store.Entity
	var d *meshData
	_, err := s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		var err error
		if e, d, err = s.meshOf(ctx, tx, p, in.Mesh); err != nil {
			return err
		}
		b := in.Body
		if b.Description != nil {
			d.Description = *b.Description
		}
		if b.PQProfile != nil {
			d.PQProfile = *b.PQProfile
		}
		if b.Transports != nil {
			d.Transports = slices.Clone(*b.Transports)
		}
		if b.CertValidity != nil {
			if d.CertValidity, err = parseValidity("body.cert_validity", *b.CertValidity); err != nil {
				return err
			}
		}
		ne, err := entity(kindMesh, e.ID, e.Org, "", d, e.Keys...)
		if err != nil {
			return err
		}
		return tx.Put(ctx, "mesh.update", ne)
	})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	e.Updated = s.now().UTC()
	m, err := s.meshView(ctx, e, d)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &body[apitypes.Mesh]{m}, nil
}

func (s *Server) deleteMesh(ctx context.Context, in *MeshPath) (*struct{}, error) {
	p := principalFrom(ctx)
	var meshID string
	_, err := s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		e, _, err := s.meshOf(ctx, tx, p, in.Mesh)
		if err != nil {
			return err
		}
		meshID = e.ID
		for _, kind := range []string{kindNode, kindRevocation, kindToken, kindPolicy} {
			list, err := tx.List(ctx, store.Query{Kind: kind, Org: p.org.ID, Parent: e.ID})
			if err != nil {
				return err
			}
			for _, c := range list {
				if err := tx.Delete(ctx, kind+".delete", kind, c.ID); err != nil {
					return err
				}
			}
		}
		return tx.Delete(ctx, "mesh.delete", kindMesh, e.ID)
	})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	s.telemetry.forgetMesh(meshID)
	return nil, nil
}

// caOf opens a mesh's CA certificate and (decrypted) key.
func (s *Server) caOf(e *store.Entity, d *meshData) (*identity.Certificate, *identity.SigningKey, error) {
	ca, err := identity.ParseCertificate(d.CACert)
	if err != nil {
		return nil, nil, err
	}
	raw, err := s.sealer.open(d.CAKey, e.ID)
	if err != nil {
		return nil, nil, err
	}
	key, err := identity.ParseCAKey(raw)
	if err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}
