package controlclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/netmap"
)

// ErrRevoked is returned by node calls once the control plane refuses the
// node as revoked (HTTP 403).
var ErrRevoked = api.ErrRevoked

// NodeClient makes the calls of one node, signed with its key.
type NodeClient struct {
	c   *Client
	id  identity.NodeID
	key *identity.SigningKey
	now func() time.Time
	// StreamIdle ends a netmap stream on which nothing, not even a
	// keepalive, arrived for this long (default 45 s: three keepalives).
	StreamIdle time.Duration
}

// Node returns the client for the node with the given keys.
func (c *Client) Node(key *identity.NodeKey) *NodeClient {
	return &NodeClient{c: c, id: key.PublicKeys().ID(), key: key.Signing, now: time.Now, StreamIdle: 45 * time.Second}
}

// ID returns the node's ID.
func (n *NodeClient) ID() identity.NodeID { return n.id }

// NewEnrollRequest builds an enrollment request: the node's public keys and
// the proof, signed with its key, that it holds them.
func NewEnrollRequest(token, name string, key *identity.NodeKey, endpoints []string) *api.EnrollRequest {
	pub := key.PublicKeys()
	keys := api.PublicKeys{DH: pub.DH, KEM: pub.KEM, Signing: pub.Signing}
	return &api.EnrollRequest{Token: token, Name: name, Keys: keys, Endpoints: endpoints,
		Proof: key.Signing.Sign(api.LabelEnroll, api.EnrollProof(token, name, keys))}
}

func (n *NodeClient) sign(req *http.Request, body []byte) {
	api.SignRequest(req, body, n.id, n.key, n.now())
}

// nodeErr maps a refusal as revoked to ErrRevoked.
func nodeErr(err error) error {
	if StatusOf(err) == http.StatusForbidden {
		return fmt.Errorf("%w: %w", ErrRevoked, err)
	}
	return err
}

// Enroll registers the node with a join token (build req with
// NewEnrollRequest). Enrolling again with the same keys returns the node's
// state.
func (n *NodeClient) Enroll(ctx context.Context, req *api.EnrollRequest) (*api.NodeResponse, error) {
	var out api.NodeResponse
	if _, err := n.c.do(ctx, request{method: http.MethodPost, path: api.PathEnroll, body: req}, &out); err != nil {
		return nil, nodeErr(err)
	}
	return &out, nil
}

// Status returns the node's status, the mesh CA and, once approved, its
// certificate.
func (n *NodeClient) Status(ctx context.Context) (*api.NodeResponse, error) {
	var out api.NodeResponse
	if _, err := n.c.do(ctx, request{method: http.MethodGet, path: api.PathNode, sign: n.sign}, &out); err != nil {
		return nil, nodeErr(err)
	}
	return &out, nil
}

// Heartbeat reports the node's endpoints, health and traffic.
func (n *NodeClient) Heartbeat(ctx context.Context, hb *api.Heartbeat) error {
	_, err := n.c.do(ctx, request{method: http.MethodPost, path: api.PathHeartbeat, body: hb, sign: n.sign}, nil)
	return nodeErr(err)
}

// Renew asks for a fresh certificate.
func (n *NodeClient) Renew(ctx context.Context) (*api.NodeResponse, error) {
	var out api.NodeResponse
	if _, err := n.c.do(ctx, request{method: http.MethodPost, path: api.PathRenew, sign: n.sign}, &out); err != nil {
		return nil, nodeErr(err)
	}
	return &out, nil
}

// maxLine bounds one line of the netmap stream: a signed delta, its payload
// base64-encoded in JSON.
const maxLine = netmap.MaxSignedSize/3*4 + 64<<10

// StreamNetmap opens the node's netmap stream and calls fn with every signed
// delta (unverified: the caller opens it with the mesh CA) until ctx ends,
// the stream breaks or fn returns an error; it returns what ended it. since
// is the version of the netmap the node holds.
func (n *NodeClient) StreamNetmap(ctx context.Context, since uint64, fn func(*netmap.Signed) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	q := url.Values{"since": {strconv.FormatUint(since, 10)}}
	// No overall timeout: the stream lives as long as the connection. An
	// idle timer ends it when even keepalives stop.
	idle := time.AfterFunc(n.StreamIdle, func() { cancel(errors.New("controlclient: netmap stream idle")) })
	defer idle.Stop()
	resp, err := n.c.send(ctx, request{method: http.MethodGet, path: api.PathNetmap, query: q, sign: n.sign})
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return cause
		}
		return nodeErr(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for sc.Scan() {
		idle.Reset(n.StreamIdle)
		line := sc.Bytes()
		if len(line) == 0 {
			continue // keepalive
		}
		var s netmap.Signed
		if err := json.Unmarshal(line, &s); err != nil {
			return fmt.Errorf("controlclient: netmap stream: %w", err)
		}
		if err := fn(&s); err != nil {
			return err
		}
	}
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
		return cause
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("controlclient: netmap stream: %w", err)
	}
	return errors.New("controlclient: netmap stream closed by the control plane")
}

// Netmaps is StreamNetmap as an iterator: it yields each signed delta, then
// (nil, err) with what ended the stream.
func (n *NodeClient) Netmaps(ctx context.Context, since uint64) iter.Seq2[*netmap.Signed, error] {
	return func(yield func(*netmap.Signed, error) bool) {
		stop := errors.New("stop")
		err := n.StreamNetmap(ctx, since, func(s *netmap.Signed) error {
			if !yield(s, nil) {
				return stop
			}
			return nil
		})
		if err != stop {
			yield(nil, err)
		}
	}
}
