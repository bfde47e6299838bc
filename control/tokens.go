package control

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/store"
)

// Join token defaults and bounds.
const (
	defaultTokenTTL = 24 * time.Hour
	maxTokenTTL     = 365 * 24 * time.Hour
)

// TokenPath is the {mesh}/{token} path parameters.
type TokenPath struct {
	MeshPath
	Token string `path:"token" maxLength:"64" pattern:"^[a-z0-9_]+$" doc:"Token ID."`
}

func (s *Server) registerTokens(hapi huma.API) {
	register(s, hapi, opDef{ID: "list-tokens", Method: http.MethodGet, Path: "/api/v1/meshes/{mesh}/tokens", Tag: "Join tokens",
		Summary: "List a mesh's join tokens (never their secrets)", Role: roleMember}, s.listTokens)
	register(s, hapi, opDef{ID: "create-token", Method: http.MethodPost, Path: "/api/v1/meshes/{mesh}/tokens", Tag: "Join tokens",
		Summary: "Create a join token; the secret is shown once. Members may not preset tags or auto-approve.",
		Role:    roleMember, Status: http.StatusCreated}, s.createToken)
	register(s, hapi, opDef{ID: "get-token", Method: http.MethodGet, Path: "/api/v1/meshes/{mesh}/tokens/{token}", Tag: "Join tokens",
		Summary: "Get a join token", Role: roleMember}, s.getToken)
	register(s, hapi, opDef{ID: "revoke-token", Method: http.MethodDelete, Path: "/api/v1/meshes/{mesh}/tokens/{token}", Tag: "Join tokens",
		Summary: "Revoke a join token (members: only their own)", Role: roleMember}, s.revokeToken)
}

func tokenView(e *store.Entity, mesh string, d *tokenData, now time.Time) apitypes.Token {
	t := apitypes.Token{ID: e.ID, Mesh: mesh, Description: d.Description, Tags: d.Tags, AutoApprove: d.AutoApprove,
		MaxUses: d.MaxUses, Uses: d.Uses, Prefix: d.Prefix, ExpiresAt: d.ExpiresAt, RevokedAt: d.RevokedAt,
		Valid: d.valid(now) == nil, CreatedBy: d.CreatedBy, CreatedAt: e.Created}
	if t.Tags == nil {
		t.Tags = []string{}
	}
	return t
}

// normTags validates tags and strips an optional "tag:" prefix (the form
// policies select them by).
func normTags(field string, tags []string) ([]string, error) {
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		t = strings.TrimPrefix(t, "tag:")
		if !nameRE.MatchString(t) {
			return nil, invalid(field, "tag %q: want 1-63 of a-z, 0-9 and '-'", t)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) > identity.MaxTags {
		return nil, invalid(field, "at most %d tags", identity.MaxTags)
	}
	slices.Sort(out)
	return out, nil
}

func (s *Server) listTokens(ctx context.Context, in *struct {
	MeshPath
	PageParams
}) (*body[apitypes.TokenList], error) {
	p := principalFrom(ctx)
	m, _, err := s.meshOf(ctx, s.store, p, in.Mesh)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	items, next, err := listPage(ctx, s, store.Query{Kind: kindToken, Org: p.org.ID, Parent: m.ID}, in.PageParams,
		func(e *store.Entity, d *tokenData) (apitypes.Token, error) {
			return tokenView(e, in.Mesh, d, s.now()), nil
		})
	if err != nil {
		return nil, err
	}
	return &body[apitypes.TokenList]{apitypes.TokenList{Items: items, Next: next}}, nil
}

func (s *Server) createToken(ctx context.Context, in *struct {
	MeshPath
	Body apitypes.CreateTokenRequest
}) (*body[apitypes.CreatedToken], error) {
	p := principalFrom(ctx)
	req := in.Body
	if p.role < roleAdmin && (req.AutoApprove || len(req.Tags) > 0) {
		return nil, forbidden("only admins create tokens that auto-approve or preset tags")
	}
	tags, err := normTags("body.tags", req.Tags)
	if err != nil {
		return nil, err
	}
	ttl := defaultTokenTTL
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl < time.Second || ttl > maxTokenTTL {
			return nil, invalid("body.ttl", "ttl must be a duration from 1s to %s", maxTokenTTL)
		}
	}
	uses := 1
	if req.MaxUses != nil {
		uses = *req.MaxUses
	}
	secret, hash, shown := newSecret(prefixToken)
	d := &tokenData{Description: req.Description, Tags: tags, AutoApprove: req.AutoApprove, MaxUses: uses,
		ExpiresAt: s.now().Add(ttl).UTC(), Prefix: shown, Hash: hash, CreatedBy: p.key.ID}
	var e *store.Entity
	_, err = s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		m, _, err := s.meshOf(ctx, tx, p, in.Mesh)
		if err != nil {
			return err
		}
		if e, err = entity(kindToken, store.NewID("tok"), p.org.ID, m.ID, d, tokenKey(hash)); err != nil {
			return err
		}
		return tx.Put(ctx, "token.create", e)
	})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	e.Created = s.now().UTC()
	return &body[apitypes.CreatedToken]{apitypes.CreatedToken{Token: tokenView(e, in.Mesh, d, s.now()), Secret: secret}}, nil
}

// tokenOf resolves a token of a mesh of the caller's organization.
func (s *Server) tokenOf(ctx context.Context, r store.Reader, p *principal, mesh, id string) (*store.Entity, *tokenData, error) {
	m, _, err := s.meshOf(ctx, r, p, mesh)
	if err != nil {
		return nil, nil, err
	}
	e, err := s.orgEntity(ctx, r, p, kindToken, id, "join token")
	if err != nil {
		return nil, nil, err
	}
	if e.Parent != m.ID {
		return nil, nil, notFound("join token")
	}
	d, err := decode[tokenData](e)
	return e, d, err
}

func (s *Server) getToken(ctx context.Context, in *TokenPath) (*body[apitypes.Token], error) {
	p := principalFrom(ctx)
	e, d, err := s.tokenOf(ctx, s.store, p, in.Mesh, in.Token)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &body[apitypes.Token]{tokenView(e, in.Mesh, d, s.now())}, nil
}

// revokeToken marks a token revoked (kept, so the audit log and the token
// list show what it was; nodes enrolled with it stay).
func (s *Server) revokeToken(ctx context.Context, in *TokenPath) (*body[apitypes.Token], error) {
	p := principalFrom(ctx)
	var out apitypes.Token
	_, err := s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		e, d, err := s.tokenOf(ctx, tx, p, in.Mesh, in.Token)
		if err != nil {
			return err
		}
		if p.role < roleAdmin && d.CreatedBy != p.key.ID {
			return forbidden("members revoke only the tokens they created")
		}
		if d.RevokedAt == nil {
			now := s.now().UTC()
			d.RevokedAt = &now
		}
		ne, err := entity(kindToken, e.ID, e.Org, e.Parent, d, e.Keys...)
		if err != nil {
			return err
		}
		out = tokenView(e, in.Mesh, d, s.now())
		return tx.Put(ctx, "token.revoke", ne)
	})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &body[apitypes.Token]{out}, nil
}
