package controlclient

import (
	"context"

	"github.com/x0tta6bl4/x0t/control/apitypes"
)

// Topology returns a mesh's nodes and direct links with their health, as
// the nodes last reported them.
func (c *Client) Topology(ctx context.Context, mesh string) (*apitypes.Topology, error) {
	var out apitypes.Topology
	return &out, c.get(ctx, meshPath(mesh)+"/topology", &out)
}
