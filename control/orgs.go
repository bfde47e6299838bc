package control

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/store"
)

// Organizations, users and API keys.

// OrgPath is the {org} path parameter.
type OrgPath struct {
	Org string `path:"org" maxLength:"64" pattern:"^[a-z0-9_]+$" doc:"Organization ID."`
}

// UserPath is the {user} path parameter.
type UserPath struct {
	User string `path:"user" maxLength:"64" pattern:"^[a-z0-9_]+$" doc:"User ID."`
}

// KeyPath is the {key} path parameter.
type KeyPath struct {
	Key string `path:"key" maxLength:"64" pattern:"^[a-z0-9_]+$" doc:"API key ID."`
}

type body[T any] struct{ Body T }

func (s *Server) registerOrgs(hapi huma.API) {
	register(s, hapi, opDef{ID: "whoami", Method: http.MethodGet, Path: "/api/v1/auth/whoami", Tag: "Organizations",
		Summary: "Describe the caller: organization, user, key and effective role", Role: roleViewer}, s.whoami)
	register(s, hapi, opDef{ID: "get-own-org", Method: http.MethodGet, Path: "/api/v1/org", Tag: "Organizations",
		Summary: "Get the caller's organization", Role: roleViewer}, s.getOwnOrg)
	register(s, hapi, opDef{ID: "update-own-org", Method: http.MethodPatch, Path: "/api/v1/org", Tag: "Organizations",
		Summary: "Rename the caller's organization", Role: roleOwner}, s.updateOwnOrg)
	register(s, hapi, opDef{ID: "list-orgs", Method: http.MethodGet, Path: "/api/v1/orgs", Tag: "Organizations",
		Summary: "List organizations (operator only)", Role: roleAdmin, Operator: true}, s.listOrgs)
	register(s, hapi, opDef{ID: "create-org", Method: http.MethodPost, Path: "/api/v1/orgs", Tag: "Organizations",
		Summary: "Create an organization with its first owner and API key (operator only)", Role: roleAdmin, Operator: true,
		Status: http.StatusCreated}, s.createOrg)
	register(s, hapi, opDef{ID: "get-org", Method: http.MethodGet, Path: "/api/v1/orgs/{org}", Tag: "Organizations",
		Summary: "Get an organization: the caller's own, or any for operator admins", Role: roleViewer}, s.getOrg)
	register(s, hapi, opDef{ID: "delete-org", Method: http.MethodDelete, Path: "/api/v1/orgs/{org}", Tag: "Organizations",
		Summary: "Delete an organization and everything in it (operator owners only)", Role: roleOwner, Operator: true,
		Status: http.StatusNoContent}, s.deleteOrg)

	register(s, hapi, opDef{ID: "list-users", Method: http.MethodGet, Path: "/api/v1/users", Tag: "Users",
		Summary: "List the organization's users", Role: roleAdmin}, s.listUsers)
	register(s, hapi, opDef{ID: "create-user", Method: http.MethodPost, Path: "/api/v1/users", Tag: "Users",
		Summary: "Add a user (owners only may add owners)", Role: roleAdmin, Status: http.StatusCreated}, s.createUser)
	register(s, hapi, opDef{ID: "get-user", Method: http.MethodGet, Path: "/api/v1/users/{user}", Tag: "Users",
		Summary: "Get a user", Role: roleAdmin}, s.getUser)
	register(s, hapi, opDef{ID: "update-user", Method: http.MethodPatch, Path: "/api/v1/users/{user}", Tag: "Users",
		Summary: "Change a user's role or email", Role: roleAdmin}, s.updateUser)
	register(s, hapi, opDef{ID: "delete-user", Method: http.MethodDelete, Path: "/api/v1/users/{user}", Tag: "Users",
		Summary: "Delete a user and their API keys", Role: roleAdmin, Status: http.StatusNoContent}, s.deleteUser)

	register(s, hapi, opDef{ID: "list-keys", Method: http.MethodGet, Path: "/api/v1/keys", Tag: "API keys",
		Summary: "List the organization's API keys (never their secrets)", Role: roleAdmin}, s.listKeys)
	register(s, hapi, opDef{ID: "create-key", Method: http.MethodPost, Path: "/api/v1/keys", Tag: "API keys",
		Summary: "Create an API key with at most the caller's role; the secret is shown once", Role: roleViewer,
		Status: http.StatusCreated}, s.createKey)
	register(s, hapi, opDef{ID: "get-key", Method: http.MethodGet, Path: "/api/v1/keys/{key}", Tag: "API keys",
		Summary: "Get an API key", Role: roleAdmin}, s.getKey)
	register(s, hapi, opDef{ID: "delete-key", Method: http.MethodDelete, Path: "/api/v1/keys/{key}", Tag: "API keys",
		Summary: "Delete an API key (one's own, or any as an admin)", Role: roleViewer, Status: http.StatusNoContent}, s.deleteKey)
}

func orgView(e *store.Entity, d *orgData) apitypes.Org {
	return apitypes.Org{ID: e.ID, Name: d.Name, Operator: d.Operator, CreatedAt: e.Created}
}

func userView(e *store.Entity, d *userData) apitypes.User {
	return apitypes.User{ID: e.ID, Name: d.Name, Email: d.Email, Role: d.Role, CreatedAt: e.Created}
}

func keyView(e *store.Entity, d *keyData) apitypes.APIKey {
	return apitypes.APIKey{ID: e.ID, Name: d.Name, Role: d.Role, UserID: d.User, Prefix: d.Prefix, CreatedAt: e.Created, ExpiresAt: d.ExpiresAt}
}

func (s *Server) whoami(ctx context.Context, _ *struct{}) (*body[apitypes.Whoami], error) {
	p := principalFrom(ctx)
	ud, err := decode[userData](p.user)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &body[apitypes.Whoami]{apitypes.Whoami{Org: orgView(p.org, p.orgData), User: userView(p.user, ud),
		Key: keyView(p.key, p.keyData), Role: p.role.String()}}, nil
}

func (s *Server) getOwnOrg(ctx context.Context, _ *struct{}) (*body[apitypes.Org], error) {
	p := principalFrom(ctx)
	return &body[apitypes.Org]{orgView(p.org, p.orgData)}, nil
}

func (s *Server) updateOwnOrg(ctx context.Context, in *body[apitypes.UpdateOrgRequest]) (*body[apitypes.Org], error) {
	p := principalFrom(ctx)
	var out apitypes.Org
	_, err := s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		e, err := tx.Get(ctx, kindOrg, p.org.ID)
		if err != nil {
			return err
		}
		d, err := decode[orgData](e)
		if err != nil {
			return err
		}
		d.Name = in.Body.Name
		ne, err := entity(kindOrg, e.ID, e.Org, "", d, orgKey(d.Name))
		if err != nil {
			return err
		}
		if err := tx.Put(ctx, "org.update", ne); err != nil {
			return err
		}
		out = orgView(e, d)
		return nil
	})
	if err != nil {
		return nil, s.storeErr(ctx, err, "an organization with this name")
	}
	return &body[apitypes.Org]{out}, nil
}

func (s *Server) listOrgs(ctx context.Context, in *struct{ PageParams }) (*body[apitypes.OrgList], error) {
	items, next, err := listPage(ctx, s, store.Query{Kind: kindOrg}, in.PageParams,
		func(e *store.Entity, d *orgData) (apitypes.Org, error) { return orgView(e, d), nil })
	if err != nil {
		return nil, err
	}
	return &body[apitypes.OrgList]{apitypes.OrgList{Items: items, Next: next}}, nil
}

// listPage returns one page of the entities q selects (q.After and q.Limit
// come from pp), each decoded as D and shown by view, and the cursor of the
// next page ("" at the end). It fetches one entity more than the page holds
// to know whether another page follows. Items is never nil: an empty list is
// [] in JSON.
func listPage[D, V any](ctx context.Context, s *Server, q store.Query, pp PageParams, view func(*store.Entity, *D) (V, error)) ([]V, string, error) {
	q.After, q.Limit = pp.After, pp.Limit+1
	list, err := s.store.List(ctx, q)
	if err != nil {
		return nil, "", s.internal(ctx, err)
	}
	next := ""
	if pp.Limit > 0 && len(list) > pp.Limit {
		list, next = list[:pp.Limit], list[pp.Limit-1].ID
	}
	items := make([]V, 0, len(list))
	for _, e := range list {
		d, err := decode[D](e)
		if err != nil {
			return nil, "", s.internal(ctx, err)
		}
		v, err := view(e, d)
		if err != nil {
			return nil, "", s.internal(ctx, err)
		}
		items = append(items, v)
	}
	return items, next, nil
}

func (s *Server) createOrg(ctx context.Context, in *body[apitypes.CreateOrgRequest]) (*body[apitypes.CreateOrgResponse], error) {
	p := principalFrom(ctx)
	owner := in.Body.Owner
	if owner == "" {
		owner = "owner"
	}
	orgID, userID, keyID := store.NewID("org"), store.NewID("usr"), store.NewID("key")
	secret, hash, shown := newSecret(prefixAPIKey)
	od := &orgData{Name: in.Body.Name}
	ud := &userData{Name: owner, Email: in.Body.Email, Role: apitypes.RoleOwner}
	kd := &keyData{Name: "bootstrap", Role: apitypes.RoleOwner, User: userID, Prefix: shown, Hash: hash}
	var out apitypes.CreateOrgResponse
	_, err := s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		org, err := entity(kindOrg, orgID, orgID, "", od, orgKey(od.Name))
		if err != nil {
			return err
		}
		user, err := entity(kindUser, userID, orgID, "", ud, userKey(orgID, owner))
		if err != nil {
			return err
		}
		key, err := entity(kindKey, keyID, orgID, "", kd, apiKeyKey(hash))
		if err != nil {
			return err
		}
		for _, c := range []struct {
			action string
			e      *store.Entity
		}{{"org.create", org}, {"user.create", user}, {"apikey.create", key}} {
			if err := tx.Put(ctx, c.action, c.e); err != nil {
				return err
			}
		}
		now := s.now().UTC()
		org.Created, user.Created, key.Created = now, now, now
		out = apitypes.CreateOrgResponse{Org: orgView(org, od), User: userView(user, ud),
			Key: apitypes.CreatedKey{APIKey: keyView(key, kd), Key: secret}}
		return nil
	})
	if err != nil {
		return nil, s.storeErr(ctx, err, "an organization with this name")
	}
	return &body[apitypes.CreateOrgResponse]{out}, nil
}

func (s *Server) getOrg(ctx context.Context, in *OrgPath) (*body[apitypes.Org], error) {
	p := principalFrom(ctx)
	if in.Org != p.org.ID && !(p.orgData.Operator && p.role >= roleAdmin) {
		return nil, notFound("organization")
	}
	e, err := s.store.Get(ctx, kindOrg, in.Org)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("organization")
	}
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	d, err := decode[orgData](e)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &body[apitypes.Org]{orgView(e, d)}, nil
}

// deleteOrg removes every entity of an organization. Its audit chain stays:
// the log is append-only, and the deletion is its last entry.
func (s *Server) deleteOrg(ctx context.Context, in *OrgPath) (*struct{}, error) {
	p := principalFrom(ctx)
	if in.Org == p.org.ID {
		return nil, conflict("the operator organization can not delete itself")
	}
	var meshes []string
	_, err := s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		if _, err := tx.Get(ctx, kindOrg, in.Org); err != nil {
			return err
		}
		for _, kind := range []string{kindNode, kindRevocation, kindToken, kindPolicy, kindMesh, kindKey, kindUser} {
			list, err := tx.List(ctx, store.Query{Kind: kind, Org: in.Org})
			if err != nil {
				return err
			}
			for _, e := range list {
				if kind == kindMesh {
					meshes = append(meshes, e.ID)
				}
				if err := tx.Delete(ctx, kind+".delete", kind, e.ID); err != nil {
					return err
				}
			}
		}
		return tx.Delete(ctx, "org.delete", kindOrg, in.Org)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("organization")
	}
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	for _, m := range meshes {
		s.telemetry.forgetMesh(m)
	}
	return nil, nil
}

// Users.

func (s *Server) orgEntity(ctx context.Context, r store.Reader, p *principal, kind, id, what string) (*store.Entity, error) {
	e, err := r.Get(ctx, kind, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && e.Org != p.org.ID) {
		return nil, notFound(what)
	}
	return e, err
}

func (s *Server) listUsers(ctx context.Context, in *struct{ PageParams }) (*body[apitypes.UserList], error) {
	p := principalFrom(ctx)
	items, next, err := listPage(ctx, s, store.Query{Kind: kindUser, Org: p.org.ID}, in.PageParams,
		func(e *store.Entity, d *userData) (apitypes.User, error) { return userView(e, d), nil })
	if err != nil {
		return nil, err
	}
	return &body[apitypes.UserList]{apitypes.UserList{Items: items, Next: next}}, nil
}

func (s *Server) createUser(ctx context.Context, in *body[apitypes.CreateUserRequest]) (*body[apitypes.User], error) {
	p := principalFrom(ctx)
	if parseRole(in.Body.Role) > p.role {
		return nil, forbidden("a %s can not create a user with the %s role", p.role, in.Body.Role)
	}
	d := &userData{Name: in.Body.Name, Email: in.Body.Email, Role: in.Body.Role}
	e, err := entity(kindUser, store.NewID("usr"), p.org.ID, "", d, userKey(p.org.ID, d.Name))
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	if _, err := s.store.Update(ctx, p.actor(), func(tx store.Tx) error { return tx.Put(ctx, "user.create", e) }); err != nil {
		return nil, s.storeErr(ctx, err, "a user with this name")
	}
	e.Created = s.now().UTC()
	return &body[apitypes.User]{userView(e, d)}, nil
}

func (s *Server) getUser(ctx context.Context, in *UserPath) (*body[apitypes.User], error) {
	p := principalFrom(ctx)
	e, err := s.orgEntity(ctx, s.store, p, kindUser, in.User, "user")
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	d, err := decode[userData](e)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &body[apitypes.User]{userView(e, d)}, nil
}

// owners counts the organization's owners (one must remain).
func owners(ctx context.Context, tx store.Tx, org string) (int, error) {
	list, err := tx.List(ctx, store.Query{Kind: kindUser, Org: org})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range list {
		if d, err := decode[userData](e); err == nil && d.Role == apitypes.RoleOwner {
			n++
		}
	}
	return n, nil
}

func (s *Server) updateUser(ctx context.Context, in *struct {
	UserPath
	Body apitypes.UpdateUserRequest
}) (*body[apitypes.User], error) {
	p := principalFrom(ctx)
	var out apitypes.User
	_, err := s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		e, err := s.orgEntity(ctx, tx, p, kindUser, in.User, "user")
		if err != nil {
			return err
		}
		d, err := decode[userData](e)
		if err != nil {
			return err
		}
		if in.Body.Role != nil && *in.Body.Role != d.Role {
			if max(parseRole(*in.Body.Role), parseRole(d.Role)) > p.role {
				return forbidden("a %s can not change a user's role between %s and %s", p.role, d.Role, *in.Body.Role)
			}
			if d.Role == apitypes.RoleOwner {
				if n, err := owners(ctx, tx, p.org.ID); err != nil {
					return err
				} else if n <= 1 {
					return conflict("the last owner can not be demoted")
				}
			}
			d.Role = *in.Body.Role
		}
		if in.Body.Email != nil {
			d.Email = *in.Body.Email
		}
		ne, err := entity(kindUser, e.ID, e.Org, "", d, e.Keys...)
		if err != nil {
			return err
		}
		out = userView(e, d)
		return tx.Put(ctx, "user.update", ne)
	})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &body[apitypes.User]{out}, nil
}

func (s *Server) deleteUser(ctx context.Context, in *UserPath) (*struct{}, error) {
	p := principalFrom(ctx)
	_, err := s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		e, err := s.orgEntity(ctx, tx, p, kindUser, in.User, "user")
		if err != nil {
			return err
		}
		d, err := decode[userData](e)
		if err != nil {
			return err
		}
		if parseRole(d.Role) > p.role {
			return forbidden("a %s can not delete an %s", p.role, d.Role)
		}
		if d.Role == apitypes.RoleOwner {
			if n, err := owners(ctx, tx, p.org.ID); err != nil {
				return err
			} else if n <= 1 {
				return conflict("the last owner can not be deleted")
			}
		}
		keys, err := tx.List(ctx, store.Query{Kind: kindKey, Org: p.org.ID})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if kd, err := decode[keyData](k); err == nil && kd.User == e.ID {
				if err := tx.Delete(ctx, "apikey.delete", kindKey, k.ID); err != nil {
					return err
				}
			}
		}
		return tx.Delete(ctx, "user.delete", kindUser, e.ID)
	})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return nil, nil
}

// API keys.

func (s *Server) listKeys(ctx context.Context, in *struct{ PageParams }) (*body[apitypes.KeyList], error) {
	p := principalFrom(ctx)
	items, next, err := listPage(ctx, s, store.Query{Kind: kindKey, Org: p.org.ID}, in.PageParams,
		func(e *store.Entity, d *keyData) (apitypes.APIKey, error) { return keyView(e, d), nil })
	if err != nil {
		return nil, err
	}
	return &body[apitypes.KeyList]{apitypes.KeyList{Items: items, Next: next}}, nil
}

// maxKeyTTL bounds API key lifetimes given as a duration.
const maxKeyTTL = 10 * 365 * 24 * time.Hour

func (s *Server) createKey(ctx context.Context, in *body[apitypes.CreateKeyRequest]) (*body[apitypes.CreatedKey], error) {
	p := principalFrom(ctx)
	r := parseRole(in.Body.Role)
	if r > p.role {
		return nil, forbidden("a %s can not create a key with the %s role", p.role, in.Body.Role)
	}
	userID := in.Body.UserID
	if userID == "" {
		userID = p.user.ID
	} else if userID != p.user.ID && p.role < roleAdmin {
		return nil, forbidden("only admins create keys for other users")
	}
	d := &keyData{Name: in.Body.Name, Role: in.Body.Role, User: userID}
	if in.Body.TTL != "" {
		ttl, err := time.ParseDuration(in.Body.TTL)
		if err != nil || ttl < time.Minute || ttl > maxKeyTTL {
			return nil, invalid("body.ttl", "ttl must be a duration from 1m to %s", maxKeyTTL)
		}
		t := s.now().Add(ttl).UTC().Truncate(time.Second)
		d.ExpiresAt = &t
	}
	secret, hash, shown := newSecret(prefixAPIKey)
	d.Prefix, d.Hash = shown, hash
	e, err := entity(kindKey, store.NewID("key"), p.org.ID, "", d, apiKeyKey(hash))
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	_, err = s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		if _, err := s.orgEntity(ctx, tx, p, kindUser, userID, "user"); err != nil {
			return err
		}
		return tx.Put(ctx, "apikey.create", e)
	})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	e.Created = s.now().UTC()
	return &body[apitypes.CreatedKey]{apitypes.CreatedKey{APIKey: keyView(e, d), Key: secret}}, nil
}

func (s *Server) getKey(ctx context.Context, in *KeyPath) (*body[apitypes.APIKey], error) {
	p := principalFrom(ctx)
	e, err := s.orgEntity(ctx, s.store, p, kindKey, in.Key, "API key")
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	d, err := decode[keyData](e)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return &body[apitypes.APIKey]{keyView(e, d)}, nil
}

func (s *Server) deleteKey(ctx context.Context, in *KeyPath) (*struct{}, error) {
	p := principalFrom(ctx)
	_, err := s.store.Update(ctx, p.actor(), func(tx store.Tx) error {
		e, err := s.orgEntity(ctx, tx, p, kindKey, in.Key, "API key")
		if err != nil {
			return err
		}
		d, err := decode[keyData](e)
		if err != nil {
			return err
		}
		if d.User != p.user.ID && p.role < roleAdmin {
			return forbidden("only admins delete other users' keys")
		}
		if parseRole(d.Role) > p.role {
			return forbidden("a %s can not delete a key with the %s role", p.role, d.Role)
		}
		return tx.Delete(ctx, "apikey.delete", kindKey, e.ID)
	})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	return nil, nil
}
