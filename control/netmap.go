package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humachi"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/netmap"
	"github.com/x0tta6bl4/x0t/policy"
	"github.com/x0tta6bl4/x0t/store"
)

// The netmap streamer.
//
// For each mesh with connected nodes a meshHub keeps an immutable meshView:
// the mesh's nodes, its approved peers, its compiled policy and revocations,
// read from the store. Commits that touch the mesh mark it dirty; the hub
// waits Debounce, so a burst of changes becomes one rebuild, then publishes
// the new view by closing the old one's next channel. Each stream goroutine
// then diffs the view it last sent against the new one for its node (peer
// entries are shared between views and compared by pointer), compiles the
// node's rules, signs one delta with the mesh CA and writes it. A burst of N
// joins thus costs one view build plus one delta per connected node.

type viewNode struct {
	version uint64
	status  string
	member  policy.Member
	peer    *netmap.Peer // set when approved; shared across views while unchanged
}

type meshView struct {
	version  uint64 // store sequence when read: orders versions across reconnects
	meshName string
	gone     bool // the mesh was deleted
	caKey    *identity.SigningKey
	nodes    map[string]*viewNode
	peers    []*netmap.Peer // approved nodes, by ID
	members  []policy.Member
	pol      *policy.Policy
	revoked  []string      // sorted
	next     chan struct{} // closed when a newer view is published
}

type hub struct {
	s *Server

	mu     sync.Mutex
	meshes map[string]*meshHub
	online map[string]int // node ID → open streams
	closed bool

	snapshots chan struct{} // bounds full snapshots being encoded at once
}

type meshHub struct {
	id    string
	h     *hub
	subs  int
	dirty chan struct{}
	stop  chan struct{}
	ready chan struct{} // closed once the first view is published
	view  atomic.Pointer[meshView]

	// Decoded state reused between builds while the entity is unchanged.
	nodes     map[string]*viewNode
	polVer    uint64
	pol       *policy.Policy
	caVer     uint64
	caKey     *identity.SigningKey
	buildErrs int
}

func newHub(s *Server) *hub {
	return &hub{s: s, meshes: map[string]*meshHub{}, online: map[string]int{}, snapshots: make(chan struct{}, 2*runtime.GOMAXPROCS(0))}
}

// onCommit marks the meshes that committed events touch.
func (h *hub) onCommit(evs []store.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range evs {
		var mesh string
		switch e.Kind {
		case kindMesh, kindPolicy:
			mesh = e.ID
		case kindNode, kindRevocation:
			mesh = e.Parent
		default:
			continue
		}
		if mh := h.meshes[mesh]; mh != nil {
			select {
			case mh.dirty <- struct{}{}:
			default:
			}
		}
	}
}

// subscribe returns the mesh's hub, starting it for the first subscriber.
func (h *hub) subscribe(mesh, node string) (*meshHub, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("control: shutting down")
	}
	mh := h.meshes[mesh]
	if mh == nil {
		mh = &meshHub{id: mesh, h: h, dirty: make(chan struct{}, 1), stop: make(chan struct{}), ready: make(chan struct{}),
			nodes: map[string]*viewNode{}}
		h.meshes[mesh] = mh
		h.s.bg.Add(1)
		go mh.run()
	}
	mh.subs++
	h.online[node]++
	return mh, nil
}

func (h *hub) unsubscribe(mh *meshHub, node string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.online[node]--; h.online[node] <= 0 {
		delete(h.online, node)
	}
	if mh.subs--; mh.subs == 0 {
		close(mh.stop)
		delete(h.meshes, mh.id)
	}
}

func (h *hub) isOnline(node string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.online[node] > 0
}

// close stops every mesh hub (the streams end through Server.streamCtx).
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for id, mh := range h.meshes {
		close(mh.stop)
		delete(h.meshes, id)
	}
}

// run rebuilds the view whenever the mesh changes, at most once per
// Debounce.
func (mh *meshHub) run() {
	defer mh.h.s.bg.Done()
	s := mh.h.s
	first := true
	for {
		if !first {
			select {
			case <-mh.stop:
				return
			case <-mh.dirty:
			}
			select { // let the burst finish
			case <-mh.stop:
				return
			case <-time.After(s.cfg.Debounce):
			}
			select { // what came during the wait is in this build
			case <-mh.dirty:
			default:
			}
		}
		v, err := mh.build(s.streamCtx)
		if err != nil {
			if s.streamCtx.Err() != nil {
				return
			}
			mh.buildErrs++
			s.log.Error("netmap build", "mesh", mh.id, "err", err)
			time.Sleep(min(time.Duration(mh.buildErrs)*100*time.Millisecond, 5*time.Second))
			select {
			case mh.dirty <- struct{}{}:
			default:
			}
			continue
		}
		mh.buildErrs = 0
		if old := mh.view.Swap(v); old != nil {
			close(old.next)
		}
		if first {
			close(mh.ready)
			first = false
		}
	}
}

// build reads the mesh from the store into a new view.
func (mh *meshHub) build(ctx context.Context) (*meshView, error) {
	s := mh.h.s
	// The sequence first: state read after it is at least that new.
	seq, err := s.store.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	v := &meshView{version: seq, next: make(chan struct{}), nodes: map[string]*viewNode{}}
	m, err := s.store.Get(ctx, kindMesh, mh.id)
	if errors.Is(err, store.ErrNotFound) {
		v.gone = true
		return v, nil
	}
	if err != nil {
		return nil, err
	}
	md, err := decode[meshData](m)
	if err != nil {
		return nil, err
	}
	v.meshName = md.Name
	if mh.caKey == nil || mh.caVer != m.Version {
		if _, mh.caKey, err = s.caOf(m, md); err != nil {
			return nil, err
		}
		mh.caVer = m.Version
	}
	v.caKey = mh.caKey
	if pe, err := s.store.Get(ctx, kindPolicy, mh.id); err == nil {
		if mh.pol == nil || mh.polVer != pe.Version {
			pd, err := decode[policyData](pe)
			if err != nil {
				return nil, err
			}
			if mh.pol, err = policy.Parse([]byte(pd.Text)); err != nil {
				return nil, fmt.Errorf("control: stored policy of mesh %s: %w", mh.id, err)
			}
			mh.polVer = pe.Version
		}
		v.pol = mh.pol
	} else if errors.Is(err, store.ErrNotFound) {
		v.pol = policy.Default()
	} else {
		return nil, err
	}
	nodes, err := s.store.List(ctx, store.Query{Kind: kindNode, Parent: mh.id})
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(nodes))
	for _, e := range nodes {
		seen[e.ID] = true
		vn := mh.nodes[e.ID]
		if vn == nil || vn.version != e.Version {
			d, err := decode[nodeData](e)
			if err != nil {
				return nil, err
			}
			nv := &viewNode{version: e.Version, status: d.Status,
				member: policy.Member{ID: e.ID, Name: d.Name, Tags: d.Tags, Addrs: addrs(d)}}
			if d.Status == api.StatusApproved && len(d.Cert) > 0 {
				p := &netmap.Peer{ID: e.ID, Name: d.Name, Cert: d.Cert, Endpoints: d.Endpoints}
				if vn != nil && vn.peer != nil && peerSame(vn.peer, p) {
					p = vn.peer // unchanged for peers: keep the pointer
				}
				nv.peer = p
			}
			vn = nv
			mh.nodes[e.ID] = vn
		}
		v.nodes[e.ID] = vn
		switch vn.status {
		case api.StatusApproved:
			if vn.peer != nil {
				v.peers = append(v.peers, vn.peer)
				v.members = append(v.members, vn.member)
			}
		case api.StatusRevoked:
			v.revoked = append(v.revoked, e.ID)
		}
	}
	for id := range mh.nodes {
		if !seen[id] {
			delete(mh.nodes, id)
		}
	}
	revs, err := s.store.List(ctx, store.Query{Kind: kindRevocation, Parent: mh.id})
	if err != nil {
		return nil, err
	}
	now := s.now()
	for _, e := range revs {
		d, err := decode[revocationData](e)
		if err != nil {
			return nil, err
		}
		if d.NotAfter.After(now) {
			v.revoked = append(v.revoked, e.ID)
		}
	}
	slices.Sort(v.revoked)
	v.revoked = slices.Compact(v.revoked)
	return v, nil
}

func addrs(d *nodeData) []netip.Addr {
	var out []netip.Addr
	if d.IPv4.IsValid() {
		out = append(out, d.IPv4)
	}
	if d.IPv6.IsValid() {
		out = append(out, d.IPv6)
	}
	return out
}

func peerSame(a, b *netmap.Peer) bool {
	return a.ID == b.ID && a.Name == b.Name && bytes.Equal(a.Cert, b.Cert) && slices.Equal(a.Endpoints, b.Endpoints)
}

// The stream endpoint.

type netmapInput struct {
	Since uint64 `query:"since" doc:"The version of the netmap the node holds (0 for none). Every stream starts with a full snapshot; versions only grow."`
}

func (s *Server) registerNetmap(hapi huma.API) {
	register(s, hapi, opDef{ID: "node-netmap", Method: http.MethodGet, Path: api.PathNetmap, Tag: "Node API", Node: true,
		Summary: "Stream the calling node's signed netmap",
		Desc: "A long-lived application/x-ndjson stream: each line is one netmap.Signed (a delta signed by the mesh CA, " +
			"label x0t-netmap-v1); the first is a full snapshot (from 0), then changes. An empty line every 15 s keeps " +
			"the connection alive. A pending node receives nothing until it is approved; a revoked node gets a last " +
			"delta naming itself revoked, and the stream ends.", Errors: []int{http.StatusServiceUnavailable}}, s.streamNetmap)
	// The success response is a stream of JSON lines, not one JSON document.
	op := registered(hapi, http.MethodGet, api.PathNetmap)
	op.Responses["200"] = &huma.Response{Description: "A stream of signed netmap deltas, one JSON object per line.",
		Content: map[string]*huma.MediaType{"application/x-ndjson": {Schema: hapi.OpenAPI().Components.Schemas.Schema(
			reflectType[netmap.Signed](), true, "NetmapSigned")}}}
}

func (s *Server) streamNetmap(ctx context.Context, in *netmapInput) (*huma.StreamResponse, error) {
	node, _, err := s.authNode(ctx, nil)
	if err != nil {
		return nil, err
	}
	mh, err := s.hub.subscribe(node.Parent, node.ID)
	if err != nil {
		return nil, huma.Error503ServiceUnavailable(err.Error())
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		defer s.hub.unsubscribe(mh, node.ID)
		r, w := humachi.Unwrap(hctx)
		st := &stream{s: s, id: node.ID, w: w, rc: http.NewResponseController(w), sent: in.Since, min: node.Version}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		st.rc.Flush()
		if err := st.run(r.Context(), mh); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Debug("netmap stream ended", "node", node.ID, "err", err)
		}
	}}, nil
}

// stream is one node's netmap stream.
type stream struct {
	s     *Server
	id    string
	w     http.ResponseWriter
	rc    *http.ResponseController
	last  *meshView // the view of the last delta sent; nil before the snapshot
	rules policy.Rules
	sent  uint64 // version of the last delta sent (or the node's, at first)
	min   uint64 // store sequence of the node's record when the stream opened
}

var errStreamEnd = errors.New("stream ended by the control plane")

func (st *stream) run(ctx context.Context, mh *meshHub) error {
	keepalive := time.NewTicker(st.s.cfg.Keepalive)
	defer keepalive.Stop()
	select {
	case <-mh.ready:
	case <-ctx.Done():
		return ctx.Err()
	case <-st.s.streamCtx.Done():
		return errStreamEnd
	}
	for {
		v := mh.view.Load()
		done, err := st.update(v)
		if err != nil || done {
			return err
		}
		select {
		case <-v.next:
		case <-keepalive.C:
			if err := st.write([]byte("\n")); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-st.s.streamCtx.Done():
			return errStreamEnd
		}
	}
}

// update sends what changed for this node in v; done means the stream is over.
func (st *stream) update(v *meshView) (done bool, err error) {
	if v == st.last || v.version < st.min {
		return false, nil // nothing new, or a view older than the node itself: the next is coming
	}
	me := v.nodes[st.id]
	switch {
	case v.gone || me == nil:
		return true, errStreamEnd // mesh or node deleted: its requests now fail
	case me.status == api.StatusPending:
		return false, nil
	case me.status == api.StatusRevoked:
		// Tell the node itself, then hang up: it is refused from now on.
		d := &netmap.Delta{Mesh: v.meshName, Node: st.id, From: st.sentFrom(), To: st.nextVersion(v), Issued: st.s.now().UTC(),
			Revoked: []string{st.id}}
		if st.last == nil {
			d.Rules = &policy.Rules{}
		} else {
			for _, p := range st.last.peers {
				if p.ID != st.id {
					d.Remove = append(d.Remove, p.ID)
				}
			}
		}
		if err := st.send(d, v); err != nil {
			return true, err
		}
		return true, errStreamEnd
	}
	release := func() {}
	if st.last == nil {
		// A snapshot holds every peer's certificate (about 9 kB each in
		// JSON): bound how many are encoded at once, so that a thousand
		// nodes reconnecting together do not hold a thousand of them. The
		// slot is not held while writing: a slow reader delays only itself.
		select {
		case st.s.hub.snapshots <- struct{}{}:
			release = sync.OnceFunc(func() { <-st.s.hub.snapshots })
			defer release()
		case <-st.s.streamCtx.Done():
			return true, errStreamEnd
		}
	}
	rules := v.pol.Compile(me.member, v.members)
	d := &netmap.Delta{Mesh: v.meshName, Node: st.id, From: st.sentFrom(), Issued: st.s.now().UTC()}
	if st.last == nil {
		for _, p := range v.peers {
			if p.ID != st.id {
				d.Upsert = append(d.Upsert, *p)
			}
		}
		d.Rules = &rules
		d.Revoked = slices.Clone(v.revoked)
	} else {
		d.Upsert, d.Remove = diffPeers(st.last.peers, v.peers, st.id)
		if !rules.Equal(st.rules) {
			d.Rules = &rules
		}
		d.Revoked = newlyRevoked(st.last.revoked, v.revoked)
		if len(d.Upsert) == 0 && len(d.Remove) == 0 && d.Rules == nil && len(d.Revoked) == 0 {
			st.last = v // nothing for this node
			return false, nil
		}
	}
	d.To = st.nextVersion(v)
	line, err := encode(d, v.caKey)
	release()
	if err != nil {
		return true, err
	}
	if err := st.write(line); err != nil {
		return true, err
	}
	if d.From == 0 {
		st.s.metrics.pushes[pushSnapshot].Inc()
	} else {
		st.s.metrics.pushes[pushDelta].Inc()
	}
	st.last, st.sent, st.rules = v, d.To, rules
	return false, nil
}

// sentFrom is the From of the next delta: 0 (a snapshot) until one was sent.
func (st *stream) sentFrom() uint64 {
	if st.last == nil {
		return 0
	}
	return st.sent
}

// nextVersion keeps versions growing for the node even when the store's
// sequence has not moved (or is behind a version the node brought along).
func (st *stream) nextVersion(v *meshView) uint64 { return max(v.version, st.sent+1) }

func (st *stream) send(d *netmap.Delta, v *meshView) error {
	line, err := encode(d, v.caKey)
	if err != nil {
		return err
	}
	if err := st.write(line); err != nil {
		return err
	}
	st.s.metrics.pushes[pushRevocation].Inc()
	st.last, st.sent = v, d.To
	return nil
}

// encode signs a delta with the mesh CA and makes it one line of the stream.
func encode(d *netmap.Delta, caKey *identity.SigningKey) ([]byte, error) {
	signed, err := netmap.Sign(d, caKey)
	if err != nil {
		return nil, err
	}
	line, err := json.Marshal(signed)
	if err != nil {
		return nil, err
	}
	return append(line, '\n'), nil
}

// streamWriteTimeout drops a node that does not read its stream.
const streamWriteTimeout = 30 * time.Second

func (st *stream) write(b []byte) error {
	st.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := st.w.Write(b); err != nil {
		return err
	}
	return st.rc.Flush()
}

// diffPeers compares two ID-sorted peer lists, leaving out self.
func diffPeers(old, cur []*netmap.Peer, self string) (upsert []netmap.Peer, remove []string) {
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case j == len(cur) || (i < len(old) && old[i].ID < cur[j].ID):
			if old[i].ID != self {
				remove = append(remove, old[i].ID)
			}
			i++
		case i == len(old) || cur[j].ID < old[i].ID:
			if cur[j].ID != self {
				upsert = append(upsert, *cur[j])
			}
			j++
		default:
			if old[i] != cur[j] && cur[j].ID != self && !peerSame(old[i], cur[j]) {
				upsert = append(upsert, *cur[j])
			}
			i++
			j++
		}
	}
	return upsert, remove
}

// newlyRevoked returns the IDs in cur but not in old (both sorted).
func newlyRevoked(old, cur []string) []string {
	var out []string
	for _, id := range cur {
		if _, ok := slices.BinarySearch(old, id); !ok {
			out = append(out, id)
		}
	}
	return out
}

func reflectType[T any]() reflect.Type { return reflect.TypeOf((*T)(nil)).Elem() }
