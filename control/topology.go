package control

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/store"
)

// The topology view: the mesh's nodes and the direct links between them,
// assembled from the nodes' last heartbeats (each reports, per peer, its
// link monitor's state, smoothed RTT and probe loss). It is what the web
// dashboard draws; nothing of it is stored or audited.

// StaleAfter is how old a heartbeat may be and still count for link health:
// three of the agent's default ten-second intervals.
const StaleAfter = 30 * time.Second

// Link health thresholds, on the worse of the two ends' fresh reports.
const (
	degradedLoss = 0.01
	degradedRTT  = 150.0 // ms
	badLoss      = 0.10
	badRTT       = 500.0 // ms
)

// maxTopologyNodes bounds the view (and the work of one request).
const maxTopologyNodes = 5000

func (s *Server) registerTopology(hapi huma.API) {
	register(s, hapi, opDef{ID: "get-topology", Method: http.MethodGet, Path: "/api/v1/meshes/{mesh}/topology", Tag: "Nodes",
		Summary: "A mesh's nodes and direct links with their health, from the nodes' last heartbeats",
		Desc: "Each link is rated from what both ends last reported about it: down if either end's link monitor " +
			"declared it down, else good, degraded or bad by the worse RTT and probe loss; unknown when no " +
			"report younger than stale_after measures it.",
		Role: roleViewer}, s.getTopology)
}

// linkReport is one end's heartbeat entry about a peer.
type linkReport struct {
	from string
	peer api.PeerTelemetry
	age  time.Duration
}

func (s *Server) getTopology(ctx context.Context, in *MeshPath) (*body[apitypes.Topology], error) {
	p := principalFrom(ctx)
	m, _, err := s.meshOf(ctx, s.store, p, in.Mesh)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	list, err := s.store.List(ctx, store.Query{Kind: kindNode, Org: p.org.ID, Parent: m.ID, Limit: maxTopologyNodes})
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	now := s.now().UTC()
	out := apitypes.Topology{Mesh: in.Mesh, Time: now, StaleAfter: StaleAfter.String(),
		Nodes: []apitypes.TopologyNode{}, Links: []apitypes.TopologyLink{}}
	members := map[string]bool{}
	var reports []linkReport
	for _, e := range list {
		d, err := decode[nodeData](e)
		if err != nil {
			return nil, s.internal(ctx, err)
		}
		if d.Status == api.StatusRevoked {
			continue
		}
		members[e.ID] = true
		n := apitypes.TopologyNode{ID: e.ID, Name: d.Name, Status: d.Status, IPv4: d.IPv4.String(), Tags: d.Tags,
			Online: s.hub.isOnline(e.ID), Stale: true}
		if d.IPv6.IsValid() {
			n.IPv6 = d.IPv6.String()
		}
		if n.Tags == nil {
			n.Tags = []string{}
		}
		if t := s.telemetry.get(e.ID); t != nil && t.Mesh == m.ID {
			seen, age := t.Time, now.Sub(t.Time)
			n.LastSeen, n.Age, n.Stale = &seen, age.Seconds(), age > StaleAfter
			n.Health, n.RxBytes, n.TxBytes = t.Health, t.Rx, t.Tx
			var hb api.Heartbeat
			if json.Unmarshal(t.Raw, &hb) == nil {
				n.Reasons, n.Uptime = hb.Reasons, hb.Uptime
				for _, inc := range hb.Incidents {
					if !inc.Resolved {
						n.Incidents++
					}
				}
				for _, pt := range hb.Peers {
					if pt.ID != e.ID {
						reports = append(reports, linkReport{from: e.ID, peer: pt, age: age})
					}
				}
			}
		}
		out.Nodes = append(out.Nodes, n)
	}
	out.Links = links(reports, members)
	return &body[apitypes.Topology]{out}, nil
}

// links pairs the ends' reports into links between members and rates them.
func links(reports []linkReport, members map[string]bool) []apitypes.TopologyLink {
	byPair := map[[2]string][]linkReport{}
	for _, r := range reports {
		if !members[r.peer.ID] {
			continue // a node deleted since, or not of this mesh
		}
		k := [2]string{r.from, r.peer.ID}
		if k[0] > k[1] {
			k[0], k[1] = k[1], k[0]
		}
		byPair[k] = append(byPair[k], r)
	}
	out := make([]apitypes.TopologyLink, 0, len(byPair))
	for k, rs := range byPair {
		slices.SortFunc(rs, func(x, y linkReport) int { return strings.Compare(x.from, y.from) })
		out = append(out, rateLink(k[0], k[1], rs))
	}
	slices.SortFunc(out, func(x, y apitypes.TopologyLink) int {
		if c := strings.Compare(x.A, y.A); c != 0 {
			return c
		}
		return strings.Compare(x.B, y.B)
	})
	return out
}

// rateLink decides a link's state from its ends' reports: only fresh ones
// count; a monitor that says down wins; otherwise the worse loss and RTT.
func rateLink(a, b string, rs []linkReport) apitypes.TopologyLink {
	l := apitypes.TopologyLink{A: a, B: b, State: apitypes.LinkUnknown, Report: make([]apitypes.LinkReport, 0, len(rs))}
	measured, down := false, false
	for i, r := range rs {
		fresh := r.age <= StaleAfter
		lr := apitypes.LinkReport{From: r.from, RTT: r.peer.RTTMillis, Loss: r.peer.Loss, RxBytes: r.peer.RxBytes,
			TxBytes: r.peer.TxBytes, Age: r.age.Seconds(), Stale: !fresh}
		if r.peer.Link == "up" || r.peer.Link == "down" {
			lr.Link = r.peer.Link
		}
		if !r.peer.LastHandshake.IsZero() {
			hs := r.peer.LastHandshake
			lr.LastHandshake = &hs
		}
		l.Report = append(l.Report, lr)
		if i == 0 || r.age.Seconds() < l.Age {
			l.Age = r.age.Seconds()
		}
		if !fresh {
			continue
		}
		if lr.Link == "down" {
			down = true
		}
		if lr.Link != "" || lr.RTT > 0 {
			measured = true
			l.RTT, l.Loss = max(l.RTT, lr.RTT), max(l.Loss, lr.Loss)
		}
	}
	switch {
	case down:
		l.State = apitypes.LinkDown
	case !measured:
	case l.Loss >= badLoss || l.RTT >= badRTT:
		l.State = apitypes.LinkBad
	case l.Loss >= degradedLoss || l.RTT >= degradedRTT:
		l.State = apitypes.LinkDegraded
	default:
		l.State = apitypes.LinkGood
	}
	return l
}
