package control

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/store"
)

// telemetry keeps each node's last heartbeat in memory and writes the
// changed ones to the store every TelemetryFlush in one transaction.
// Heartbeats are observations, not changes anybody made: they are not
// audited events (a thousand nodes every ten seconds would bury the audit
// log), and losing the last few seconds of them in a crash loses nothing
// that the next heartbeat does not bring back.
type telemetry struct {
	s *Server

	mu    sync.Mutex
	last  map[string]*nodeTelemetry
	dirty map[string]bool
}

// nodeTelemetry is a node's last report, with its totals precomputed.
type nodeTelemetry struct {
	Org, Mesh string
	Time      time.Time
	Health    string
	Rx, Tx    uint64
	Raw       json.RawMessage // the heartbeat as sent
}

func newTelemetry(s *Server) *telemetry {
	return &telemetry{s: s, last: map[string]*nodeTelemetry{}, dirty: map[string]bool{}}
}

func (t *telemetry) record(org, mesh, node string, hb *api.Heartbeat, raw []byte) {
	nt := &nodeTelemetry{Org: org, Mesh: mesh, Time: t.s.now().UTC(), Health: hb.Health, Raw: append(json.RawMessage(nil), raw...)}
	for _, p := range hb.Peers {
		nt.Rx += p.RxBytes
		nt.Tx += p.TxBytes
	}
	t.mu.Lock()
	t.last[node] = nt
	t.dirty[node] = true
	t.mu.Unlock()
	t.s.metrics.heartbeats.Inc()
}

// get returns a node's last report: from memory, else from the store.
func (t *telemetry) get(node string) *nodeTelemetry {
	t.mu.Lock()
	nt := t.last[node]
	t.mu.Unlock()
	if nt != nil {
		return nt
	}
	st, err := t.s.store.Telemetry(context.Background(), node)
	if err != nil {
		return nil
	}
	var hb api.Heartbeat
	if json.Unmarshal(st.Data, &hb) != nil {
		return nil
	}
	nt = &nodeTelemetry{Org: st.Org, Mesh: st.Mesh, Time: st.Time, Health: hb.Health, Raw: st.Data}
	for _, p := range hb.Peers {
		nt.Rx += p.RxBytes
		nt.Tx += p.TxBytes
	}
	t.mu.Lock()
	if t.last[node] == nil {
		t.last[node] = nt
	}
	t.mu.Unlock()
	return nt
}

func (t *telemetry) forget(node string) {
	t.mu.Lock()
	delete(t.last, node)
	delete(t.dirty, node)
	t.mu.Unlock()
	t.s.store.DeleteTelemetry(context.Background(), node)
}

func (t *telemetry) forgetMesh(mesh string) {
	t.mu.Lock()
	var nodes []string
	for id, nt := range t.last {
		if nt.Mesh == mesh {
			nodes = append(nodes, id)
		}
	}
	t.mu.Unlock()
	for _, id := range nodes {
		t.forget(id)
	}
}

func (t *telemetry) run(ctx context.Context) {
	tick := time.NewTicker(t.s.cfg.TelemetryFlush)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := t.flush(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.s.log.Warn("telemetry flush", "err", err)
			}
		}
	}
}

// flush writes the reports received since the last flush.
func (t *telemetry) flush(ctx context.Context) error {
	t.mu.Lock()
	batch := make([]store.Telemetry, 0, len(t.dirty))
	for id := range t.dirty {
		nt := t.last[id]
		batch = append(batch, store.Telemetry{Node: id, Org: nt.Org, Mesh: nt.Mesh, Time: nt.Time, Data: nt.Raw})
	}
	clear(t.dirty)
	t.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	return t.s.store.PutTelemetry(ctx, batch)
}
