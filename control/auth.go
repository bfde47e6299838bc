package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/danielgtaylor/huma/v2"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/store"
)

// role orders the roles; a permission is a minimum role.
type role int

const (
	roleNone role = iota
	roleViewer
	roleMember
	roleAdmin
	roleOwner
)

func parseRole(s string) role {
	switch s {
	case apitypes.RoleViewer:
		return roleViewer
	case apitypes.RoleMember:
		return roleMember
	case apitypes.RoleAdmin:
		return roleAdmin
	case apitypes.RoleOwner:
		return roleOwner
	}
	return roleNone
}

func (r role) String() string {
	switch r {
	case roleViewer:
		return apitypes.RoleViewer
	case roleMember:
		return apitypes.RoleMember
	case roleAdmin:
		return apitypes.RoleAdmin
	case roleOwner:
		return apitypes.RoleOwner
	}
	return "none"
}

// principal is an authenticated API caller. Every handler scopes what it
// reads and writes to principal.org: there is no way to name another
// organization's objects except through the operator's org endpoints.
type principal struct {
	org     *store.Entity
	orgData *orgData
	user    *store.Entity
	key     *store.Entity
	keyData *keyData
	role    role
}

func (p *principal) actor() string { return "key:" + p.key.ID }

type ctxKey int

const (
	ctxRequest ctxKey = iota
	ctxPrincipal
)

func principalFrom(ctx context.Context) *principal {
	p, _ := ctx.Value(ctxPrincipal).(*principal)
	return p
}

func requestFrom(ctx context.Context) *http.Request {
	r, _ := ctx.Value(ctxRequest).(*http.Request)
	return r
}

// Operation metadata keys.
const (
	metaRole     = "x0t-role"     // role: minimum role of an API-key operation
	metaOperator = "x0t-operator" // bool: only the operator organization
)

// errAuth is the one answer to every failed API-key authentication, so that
// a guess learns nothing about which part was wrong.
var errAuth = "missing, invalid or expired API key"

// authMiddleware authenticates API-key operations before their input is
// read, checks the role, and counts failures per client address.
func (s *Server) authMiddleware(hapi huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		op := ctx.Operation()
		need, ok := op.Metadata[metaRole].(role)
		if !ok {
			next(ctx)
			return
		}
		r := requestFrom(ctx.Context())
		ip := clientIP(r)
		if s.authFail.exhausted(ip) {
			huma.WriteErr(hapi, ctx, http.StatusTooManyRequests, "too many failed authentications from this address; retry later")
			return
		}
		p, err := s.authenticate(ctx.Context(), ctx.Header("Authorization"))
		if err != nil {
			if !errors.Is(err, errUnauthenticated) {
				s.log.Error("authentication", "err", err)
				huma.WriteErr(hapi, ctx, http.StatusInternalServerError, "internal error")
				return
			}
			s.authFail.allow(ip)
			huma.WriteErr(hapi, ctx, http.StatusUnauthorized, errAuth)
			return
		}
		if p.role < need {
			huma.WriteErr(hapi, ctx, http.StatusForbidden, fmt.Sprintf("this operation needs the %s role; the key has %s", need, p.role))
			return
		}
		if op.Metadata[metaOperator] == true && !p.orgData.Operator {
			huma.WriteErr(hapi, ctx, http.StatusForbidden, "only the operator organization may do this")
			return
		}
		next(huma.WithValue(ctx, ctxPrincipal, p))
	}
}

var errUnauthenticated = errors.New("unauthenticated")

// authenticate resolves a bearer API key.
func (s *Server) authenticate(ctx context.Context, header string) (*principal, error) {
	secret, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || !strings.HasPrefix(secret, prefixAPIKey) || len(secret) > 128 {
		return nil, errUnauthenticated
	}
	key, err := s.store.GetByKey(ctx, apiKeyKey(hashSecret(secret)))
	if errors.Is(err, store.ErrNotFound) || (err == nil && key.Kind != kindKey) {
		return nil, errUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	kd, err := decode[keyData](key)
	if err != nil {
		return nil, err
	}
	if kd.ExpiresAt != nil && !s.now().Before(*kd.ExpiresAt) {
		return nil, errUnauthenticated
	}
	user, err := s.store.Get(ctx, kindUser, kd.User)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	ud, err := decode[userData](user)
	if err != nil {
		return nil, err
	}
	org, err := s.store.Get(ctx, kindOrg, key.Org)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	od, err := decode[orgData](org)
	if err != nil {
		return nil, err
	}
	// A key never has more power than its user has now.
	return &principal{org: org, orgData: od, user: user, key: key, keyData: kd, role: min(parseRole(kd.Role), parseRole(ud.Role))}, nil
}

// nodeKeys caches parsed verifying keys of nodes: parsing an ML-DSA-65 key
// costs more than the lookup, and nodes sign every request.
type nodeKeys struct {
	mu sync.Mutex
	m  map[string]*identity.VerifyingKey // by node ID + key bytes
}

func (c *nodeKeys) get(id string, raw []byte) (*identity.VerifyingKey, error) {
	k := id + string(raw)
	c.mu.Lock()
	v := c.m[k]
	c.mu.Unlock()
	if v != nil {
		return v, nil
	}
	v, err := identity.ParseVerifyingKey(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) > 100000 {
		clear(c.m)
	}
	c.m[k] = v
	c.mu.Unlock()
	return v, nil
}

// authNode checks a node-signed request: the signature by the node's
// registered key, the clock, and that the node is not revoked (403).
func (s *Server) authNode(ctx context.Context, body []byte) (*store.Entity, *nodeData, error) {
	r := requestFrom(ctx)
	ip := clientIP(r)
	if s.authFail.exhausted(ip) {
		return nil, nil, huma.Error429TooManyRequests("too many failed authentications from this address; retry later")
	}
	var node *store.Entity
	var nd *nodeData
	_, err := api.VerifyRequest(r, body, func(id identity.NodeID) (*identity.VerifyingKey, error) {
		e, err := s.store.Get(ctx, kindNode, id.String())
		if err != nil {
			return nil, errors.New("unknown node")
		}
		d, err := decode[nodeData](e)
		if err != nil {
			return nil, err
		}
		node, nd = e, d
		return s.nodeKeys.get(e.ID, d.Keys.Signing)
	}, s.now())
	if err != nil {
		s.authFail.allow(ip)
		return nil, nil, huma.Error401Unauthorized(err.Error())
	}
	if nd.Status == api.StatusRevoked {
		return nil, nil, huma.Error403Forbidden("this node has been revoked")
	}
	return node, nd, nil
}
