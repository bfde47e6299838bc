package controlclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/x0tta6bl4/x0t/control/apitypes"
)

// Administrative calls. List calls follow the pages to the end.

func esc(s string) string { return url.PathEscape(s) }

func (c *Client) get(ctx context.Context, path string, out any) error {
	_, err := c.do(ctx, request{method: http.MethodGet, path: path}, out)
	return err
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	_, err := c.do(ctx, request{method: method, path: path, body: in}, out)
	return err
}

// listAll follows "next" cursors and gathers every page's items.
func listAll[P, T any](ctx context.Context, c *Client, path string, query url.Values, page func(*P) ([]T, string)) ([]T, error) {
	var all []T
	after := ""
	for {
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		q.Set("limit", "1000")
		if after != "" {
			q.Set("after", after)
		}
		var p P
		if _, err := c.do(ctx, request{method: http.MethodGet, path: path, query: q}, &p); err != nil {
			return all, err
		}
		items, next := page(&p)
		all = append(all, items...)
		if next == "" || len(items) == 0 {
			return all, nil
		}
		after = next
	}
}

// Whoami describes the caller.
func (c *Client) Whoami(ctx context.Context) (*apitypes.Whoami, error) {
	var out apitypes.Whoami
	return &out, c.get(ctx, "/api/v1/auth/whoami", &out)
}

// Org returns the caller's organization.
func (c *Client) Org(ctx context.Context) (*apitypes.Org, error) {
	var out apitypes.Org
	return &out, c.get(ctx, "/api/v1/org", &out)
}

// RenameOrg renames the caller's organization.
func (c *Client) RenameOrg(ctx context.Context, name string) (*apitypes.Org, error) {
	var out apitypes.Org
	return &out, c.call(ctx, http.MethodPatch, "/api/v1/org", apitypes.UpdateOrgRequest{Name: name}, &out)
}

// ListOrgs lists organizations (operator only).
func (c *Client) ListOrgs(ctx context.Context) ([]apitypes.Org, error) {
	return listAll(ctx, c, "/api/v1/orgs", nil, func(p *apitypes.OrgList) ([]apitypes.Org, string) {
		return p.Items, p.Next
	})
}

// CreateOrg creates an organization with its first owner (operator only).
func (c *Client) CreateOrg(ctx context.Context, req apitypes.CreateOrgRequest) (*apitypes.CreateOrgResponse, error) {
	var out apitypes.CreateOrgResponse
	return &out, c.call(ctx, http.MethodPost, "/api/v1/orgs", req, &out)
}

// GetOrg returns an organization by ID.
func (c *Client) GetOrg(ctx context.Context, id string) (*apitypes.Org, error) {
	var out apitypes.Org
	return &out, c.get(ctx, "/api/v1/orgs/"+esc(id), &out)
}

// DeleteOrg deletes an organization (operator owners only).
func (c *Client) DeleteOrg(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/api/v1/orgs/"+esc(id), nil, nil)
}

// ListUsers lists the organization's users.
func (c *Client) ListUsers(ctx context.Context) ([]apitypes.User, error) {
	return listAll(ctx, c, "/api/v1/users", nil, func(p *apitypes.UserList) ([]apitypes.User, string) {
		return p.Items, p.Next
	})
}

// CreateUser adds a user.
func (c *Client) CreateUser(ctx context.Context, req apitypes.CreateUserRequest) (*apitypes.User, error) {
	var out apitypes.User
	return &out, c.call(ctx, http.MethodPost, "/api/v1/users", req, &out)
}

// GetUser returns a user.
func (c *Client) GetUser(ctx context.Context, id string) (*apitypes.User, error) {
	var out apitypes.User
	return &out, c.get(ctx, "/api/v1/users/"+esc(id), &out)
}

// UpdateUser changes a user.
func (c *Client) UpdateUser(ctx context.Context, id string, req apitypes.UpdateUserRequest) (*apitypes.User, error) {
	var out apitypes.User
	return &out, c.call(ctx, http.MethodPatch, "/api/v1/users/"+esc(id), req, &out)
}

// DeleteUser deletes a user and their keys.
func (c *Client) DeleteUser(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/api/v1/users/"+esc(id), nil, nil)
}

// ListKeys lists the organization's API keys.
func (c *Client) ListKeys(ctx context.Context) ([]apitypes.APIKey, error) {
	return listAll(ctx, c, "/api/v1/keys", nil, func(p *apitypes.KeyList) ([]apitypes.APIKey, string) {
		return p.Items, p.Next
	})
}

// CreateKey creates an API key; the answer holds its secret.
func (c *Client) CreateKey(ctx context.Context, req apitypes.CreateKeyRequest) (*apitypes.CreatedKey, error) {
	var out apitypes.CreatedKey
	return &out, c.call(ctx, http.MethodPost, "/api/v1/keys", req, &out)
}

// GetKey returns an API key.
func (c *Client) GetKey(ctx context.Context, id string) (*apitypes.APIKey, error) {
	var out apitypes.APIKey
	return &out, c.get(ctx, "/api/v1/keys/"+esc(id), &out)
}

// DeleteKey deletes an API key.
func (c *Client) DeleteKey(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/api/v1/keys/"+esc(id), nil, nil)
}

func meshPath(mesh string) string { return "/api/v1/meshes/" + esc(mesh) }

// ListMeshes lists meshes.
func (c *Client) ListMeshes(ctx context.Context) ([]apitypes.Mesh, error) {
	return listAll(ctx, c, "/api/v1/meshes", nil, func(p *apitypes.MeshList) ([]apitypes.Mesh, string) {
		return p.Items, p.Next
	})
}

// CreateMesh creates a mesh.
func (c *Client) CreateMesh(ctx context.Context, req apitypes.CreateMeshRequest) (*apitypes.Mesh, error) {
	var out apitypes.Mesh
	return &out, c.call(ctx, http.MethodPost, "/api/v1/meshes", req, &out)
}

// GetMesh returns a mesh by name.
func (c *Client) GetMesh(ctx context.Context, mesh string) (*apitypes.Mesh, error) {
	var out apitypes.Mesh
	return &out, c.get(ctx, meshPath(mesh), &out)
}

// UpdateMesh changes a mesh.
func (c *Client) UpdateMesh(ctx context.Context, mesh string, req apitypes.UpdateMeshRequest) (*apitypes.Mesh, error) {
	var out apitypes.Mesh
	return &out, c.call(ctx, http.MethodPatch, meshPath(mesh), req, &out)
}

// DeleteMesh deletes a mesh and everything in it.
func (c *Client) DeleteMesh(ctx context.Context, mesh string) error {
	return c.call(ctx, http.MethodDelete, meshPath(mesh), nil, nil)
}

// ListTokens lists a mesh's join tokens.
func (c *Client) ListTokens(ctx context.Context, mesh string) ([]apitypes.Token, error) {
	return listAll(ctx, c, meshPath(mesh)+"/tokens", nil, func(p *apitypes.TokenList) ([]apitypes.Token, string) {
		return p.Items, p.Next
	})
}

// CreateToken creates a join token; the answer holds its secret.
func (c *Client) CreateToken(ctx context.Context, mesh string, req apitypes.CreateTokenRequest) (*apitypes.CreatedToken, error) {
	var out apitypes.CreatedToken
	return &out, c.call(ctx, http.MethodPost, meshPath(mesh)+"/tokens", req, &out)
}

// GetToken returns a join token.
func (c *Client) GetToken(ctx context.Context, mesh, id string) (*apitypes.Token, error) {
	var out apitypes.Token
	return &out, c.get(ctx, meshPath(mesh)+"/tokens/"+esc(id), &out)
}

// RevokeToken revokes a join token.
func (c *Client) RevokeToken(ctx context.Context, mesh, id string) (*apitypes.Token, error) {
	var out apitypes.Token
	return &out, c.call(ctx, http.MethodDelete, meshPath(mesh)+"/tokens/"+esc(id), nil, &out)
}

// ListNodes lists a mesh's nodes, optionally only those in status.
func (c *Client) ListNodes(ctx context.Context, mesh, status string) ([]apitypes.Node, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	return listAll(ctx, c, meshPath(mesh)+"/nodes", q, func(p *apitypes.NodeList) ([]apitypes.Node, string) {
		return p.Items, p.Next
	})
}

func nodePath(mesh, node string) string { return meshPath(mesh) + "/nodes/" + esc(node) }

// GetNode returns a node by name or ID.
func (c *Client) GetNode(ctx context.Context, mesh, node string) (*apitypes.Node, error) {
	var out apitypes.Node
	return &out, c.get(ctx, nodePath(mesh, node), &out)
}

// UpdateNode renames a node or replaces its tags.
func (c *Client) UpdateNode(ctx context.Context, mesh, node string, req apitypes.UpdateNodeRequest) (*apitypes.Node, error) {
	var out apitypes.Node
	return &out, c.call(ctx, http.MethodPatch, nodePath(mesh, node), req, &out)
}

// ApproveNode approves a pending node.
func (c *Client) ApproveNode(ctx context.Context, mesh, node string) (*apitypes.Node, error) {
	var out apitypes.Node
	return &out, c.call(ctx, http.MethodPost, nodePath(mesh, node)+"/approve", nil, &out)
}

// RevokeNode revokes a node.
func (c *Client) RevokeNode(ctx context.Context, mesh, node string) (*apitypes.Node, error) {
	var out apitypes.Node
	return &out, c.call(ctx, http.MethodPost, nodePath(mesh, node)+"/revoke", nil, &out)
}

// DeleteNode deletes a node.
func (c *Client) DeleteNode(ctx context.Context, mesh, node string) error {
	return c.call(ctx, http.MethodDelete, nodePath(mesh, node), nil, nil)
}

// NodeTelemetry returns a node's last heartbeat.
func (c *Client) NodeTelemetry(ctx context.Context, mesh, node string) (*apitypes.NodeTelemetry, error) {
	var out apitypes.NodeTelemetry
	return &out, c.get(ctx, nodePath(mesh, node)+"/telemetry", &out)
}

// GetACL returns a mesh's policy (JSON) and its ETag.
func (c *Client) GetACL(ctx context.Context, mesh string) (json.RawMessage, string, error) {
	var out json.RawMessage
	h, err := c.do(ctx, request{method: http.MethodGet, path: meshPath(mesh) + "/acl"}, &out)
	if err != nil {
		return nil, "", err
	}
	return out, h.Get("ETag"), nil
}

// SetACL replaces a mesh's policy. ifMatch, if not empty, is the ETag of
// the policy it replaces.
func (c *Client) SetACL(ctx context.Context, mesh string, policy []byte, ifMatch string) (json.RawMessage, string, error) {
	var out json.RawMessage
	r := request{method: http.MethodPut, path: meshPath(mesh) + "/acl", raw: policy}
	if ifMatch != "" {
		r.header = http.Header{"If-Match": {ifMatch}}
	}
	h, err := c.do(ctx, r, &out)
	if err != nil {
		return nil, "", err
	}
	return out, h.Get("ETag"), nil
}

// ValidateACL checks a policy against a mesh without storing it.
func (c *Client) ValidateACL(ctx context.Context, mesh string, policy []byte) (*apitypes.ACLValidateResponse, error) {
	var out apitypes.ACLValidateResponse
	_, err := c.do(ctx, request{method: http.MethodPost, path: meshPath(mesh) + "/acl/validate", raw: policy}, &out)
	return &out, err
}

// TestACL runs a policy's tests or checks one packet.
func (c *Client) TestACL(ctx context.Context, mesh string, req apitypes.ACLTestRequest) (*apitypes.ACLTestResponse, error) {
	var out apitypes.ACLTestResponse
	return &out, c.call(ctx, http.MethodPost, meshPath(mesh)+"/acl/test", req, &out)
}

// ListAudit returns a page of the audit log, newest first: entries before
// position before (0: from the newest), at most limit (0: the server's default).
func (c *Client) ListAudit(ctx context.Context, before uint64, limit int) (*apitypes.AuditPage, error) {
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatUint(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out apitypes.AuditPage
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/api/v1/audit", query: q}, &out)
	return &out, err
}

// VerifyAudit verifies the organization's audit chain.
func (c *Client) VerifyAudit(ctx context.Context) (*apitypes.AuditVerify, error) {
	var out apitypes.AuditVerify
	return &out, c.get(ctx, "/api/v1/audit/verify", &out)
}

// ListCheckpoints lists signed checkpoints, newest first.
func (c *Client) ListCheckpoints(ctx context.Context) ([]apitypes.Checkpoint, error) {
	var out apitypes.CheckpointList
	return out.Items, c.get(ctx, "/api/v1/audit/checkpoints", &out)
}

// CreateCheckpoint signs a checkpoint now.
func (c *Client) CreateCheckpoint(ctx context.Context) (*apitypes.Checkpoint, error) {
	var out apitypes.Checkpoint
	return &out, c.call(ctx, http.MethodPost, "/api/v1/audit/checkpoints", nil, &out)
}

// CheckpointKey returns the control plane's checkpoint verifying key.
func (c *Client) CheckpointKey(ctx context.Context) (*apitypes.CheckpointKey, error) {
	var out apitypes.CheckpointKey
	return &out, c.get(ctx, "/api/v1/audit/checkpoint-key", &out)
}
