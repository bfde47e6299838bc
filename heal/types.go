package heal

import (
	"encoding/json"
	"time"
)

// Observation is what the node tells the loop at one time: any mix of link
// samples, peer counters, path reachability and node metrics. Peers and
// neighbours are named by their node ID string (hex), as in the netmap, so the
// package does not depend on the identity package.
type Observation struct {
	Time  time.Time
	Links []LinkSample
	Peers []PeerCounters
	Paths []PathSample
	Node  *NodeSample
	// Forget names peers that left (removed from the netmap or the config):
	// the monitor drops their state at once and their incidents end without
	// a verdict. Peers that are simply no longer reported are forgotten after
	// Config.StaleAfter.
	Forget []string
}

// LinkSample is one measurement of the direct link to a neighbour over one
// transport, as link monitoring produced it over its last probe interval.
type LinkSample struct {
	Peer      string        // neighbour node ID
	Transport string        // "udp", "tls", "ws"...; "" when the node has one link per neighbour
	Up        bool          // false: link monitoring declared the link dead; RTT, loss and jitter are then ignored
	RTT       time.Duration // smoothed round-trip time
	Jitter    time.Duration // RTT variation
	Loss      float64       // fraction of probes lost, 0..1
}

// PeerCounters are a peer's failure counters, cumulative as the node keeps
// them; the monitor takes differences (a counter that goes down is read as a
// reset). The first reading of a peer counts in full, so counters must start
// at zero when the peer is created.
//
// ForgedAdverts must count only adverts that arrived inside the peer's
// authenticated session and still failed verification: only those are
// attributable to the peer. Bad MACs, bad AEAD tags and replays can be
// injected by anyone on the path, which is why they lead to a rekey before a
// quarantine (see Plan).
type PeerCounters struct {
	Peer              string
	HandshakeFailures uint64 // handshakes started with or by this peer that did not complete
	BadMAC            uint64 // handshake messages with a bad mac1/mac2
	BadAEAD           uint64 // transport packets for this peer's sessions that failed to open
	Replays           uint64 // transport packets rejected by the replay window
	ForgedAdverts     uint64 // route adverts from this peer with a bad signature or foreign links
	FloodedAdverts    uint64 // route adverts from this peer dropped by the rate limit
}

// PathSample is the routing table's view of one destination.
type PathSample struct {
	Dest      string // destination node ID
	Reachable bool   // the routing table has a route
	Via       string // next hop (== Dest for a direct route); "" when unreachable
}

// NodeSample is this node's own load. Zero values mean "not measured" and are
// harmless: they never raise a symptom.
type NodeSample struct {
	CPU   float64           // busy fraction of the agent's CPU budget, 0..1
	Queue float64           // fill fraction of the fullest packet queue, 0..1
	Drops map[string]uint64 // cumulative packet drops by reason ("queue-full", "no-route", ...)
}

// Kind is what a symptom is. Kinds are strings so that the incident log and the
// knowledge scores read well in JSON and stay stable across versions.
type Kind string

// Symptom kinds, in order of precedence when one subject shows several.
const (
	KindForgery     Kind = "forgery"            // forged adverts from inside the peer's session
	KindAuth        Kind = "auth-failures"      // bad MACs, bad AEAD tags, replay floods
	KindFlood       Kind = "advert-flood"       // the peer exceeds the advert rate limit
	KindNodeDown    Kind = "node-down"          // every link to the neighbour down and no other path to it
	KindHandshake   Kind = "handshake-failures" // handshakes with the peer keep failing
	KindNodeDegrade Kind = "node-degraded"      // the neighbour, not one link, is at fault
	KindLinkDown    Kind = "link-down"          // a link is down, the neighbour is fine otherwise
	KindLinkLoss    Kind = "link-loss"          // loss above baseline
	KindLinkRTT     Kind = "link-rtt"           // RTT above baseline
	KindLinkJitter  Kind = "link-jitter"        // jitter above baseline
	KindLocal       Kind = "local-degraded"     // most links degraded at once: this node is at fault
	KindNoPath      Kind = "no-path"            // some destinations have no route
	KindOverload    Kind = "overload"           // CPU, queues or packet drops
)

var kindOrder = []Kind{
	KindForgery, KindAuth, KindFlood, KindNodeDown, KindHandshake, KindNodeDegrade,
	KindLinkDown, KindLinkLoss, KindLinkRTT, KindLinkJitter,
	KindLocal, KindNoPath, KindOverload,
}

// rank orders kinds by precedence; unknown kinds come last.
func (k Kind) rank() int {
	for i, x := range kindOrder {
		if x == k {
			return i
		}
	}
	return len(kindOrder)
}

// counterKind reports whether the symptom comes from failure counters, whose
// window outlives the fix; such actions are judged by whether new failures
// stopped, not by whether the window emptied.
func (k Kind) counterKind() bool {
	switch k {
	case KindForgery, KindAuth, KindFlood, KindHandshake:
		return true
	}
	return false
}

// family groups kinds that are one problem seen at different stages, so that
// a remedy is not credited when its symptom merely turned into another (link
// loss that became a dead link, a dead link that turned out to be a dead
// node).
func (k Kind) family() Kind {
	switch k {
	case KindLinkDown, KindLinkLoss, KindLinkRTT, KindLinkJitter, KindNodeDown, KindNodeDegrade:
		return "connectivity"
	}
	return k
}

// security reports whether the kind is misbehaviour rather than a failure.
func (k Kind) security() bool {
	switch k {
	case KindForgery, KindAuth, KindFlood:
		return true
	}
	return false
}

// Fault is Analyze's guess at what is at fault.
type Fault string

// Faults.
const (
	FaultLink  Fault = "link"  // one link to a neighbour; the neighbour itself is fine
	FaultNode  Fault = "node"  // the neighbour node (dead, broken or misbehaving)
	FaultLocal Fault = "local" // this node
)

// State is a health state.
type State string

// Health states, from best to worst.
const (
	Healthy  State = "healthy"
	Degraded State = "degraded"
	Critical State = "critical"
)

func (s State) worse(t State) bool { return s.level() > t.level() }

func (s State) level() int {
	switch s {
	case Degraded:
		return 1
	case Critical:
		return 2
	}
	return 0
}

// Evidence is one measured fact behind a symptom. RTT and jitter are in
// milliseconds, loss is a fraction, counters are counts in the window, drops
// are per second.
type Evidence struct {
	Metric    string  `json:"metric"` // rtt_ms, jitter_ms, loss, down, bad_mac, bad_aead, replays, forged_adverts, flooded_adverts, handshake_failures, cpu, queue, drops_per_s, unreachable, alternative
	Transport string  `json:"transport,omitempty"`
	Value     float64 `json:"value"`
	Baseline  float64 `json:"baseline,omitempty"` // median of the baseline window
	MAD       float64 `json:"mad,omitempty"`      // median absolute deviation of the window
	Z         float64 `json:"z,omitempty"`        // robust z-score of Value
	Note      string  `json:"note,omitempty"`
}

// Symptom is one thing Analyze found wrong, with its subject, the guessed
// fault, and the evidence.
type Symptom struct {
	Kind      Kind   `json:"kind"`
	Subject   string `json:"subject"`             // peer ID; "" for this node
	Transport string `json:"transport,omitempty"` // the failing link's transport, for link symptoms
	Fault     Fault  `json:"fault"`
	Severity  State  `json:"severity"` // Degraded or Critical
	// AltTransport: another transport to the same neighbour is healthy, so
	// switching transport is the obvious first remedy.
	AltTransport bool       `json:"alt_transport,omitempty"`
	Reason       string     `json:"reason"` // one line for humans
	Evidence     []Evidence `json:"evidence"`
}

// ActionType is what an action does.
type ActionType string

// Action types. Reroute, Rekey, SwitchTransport, LowerMTU and Quarantine are
// remedies: they are judged and scored. Alert and Restore are bookkeeping.
const (
	ActReroute         ActionType = "reroute"
	ActRekey           ActionType = "rekey"
	ActSwitchTransport ActionType = "switch-transport"
	ActLowerMTU        ActionType = "lower-mtu"
	ActQuarantine      ActionType = "quarantine"
	ActAlert           ActionType = "alert"
	ActRestore         ActionType = "restore" // lifts a reroute once its incident is over
)

func (t ActionType) remedy() bool { return t != ActAlert && t != ActRestore }

// Scope says what a reroute avoids.
type Scope string

// Reroute scopes.
const (
	AvoidLink Scope = "link" // raise the metric of (or mark down) the direct link to the peer
	AvoidNode Scope = "node" // route nothing through the peer
)

// Action is one thing the node should do. The core never acts itself; the node
// carries actions out (Execute) and reports each outcome with Loop.Outcome.
type Action struct {
	ID        uint64     `json:"id"`
	Incident  uint64     `json:"incident"`
	Type      ActionType `json:"type"`
	Kind      Kind       `json:"kind"`                // the incident kind it addresses (the knowledge key)
	Peer      string     `json:"peer,omitempty"`      // "" with LowerMTU: every peer
	Scope     Scope      `json:"scope,omitempty"`     // Reroute and Restore
	Transport string     `json:"transport,omitempty"` // SwitchTransport: the failing transport
	MTU       int        `json:"mtu,omitempty"`       // LowerMTU: the underlay path MTU to assume
	Report    *Report    `json:"report,omitempty"`    // Quarantine: the evidence to sign and gossip
	Reason    string     `json:"reason"`              // why this action, for humans
	// About is the incident as it stood when an Alert was raised; not in JSON
	// because the action itself is part of the incident's record.
	About *Incident `json:"-"`
}

// Report is a misbehaviour report, ready to be signed by the node and gossiped:
// a peer is quarantined mesh-wide only on f+1 independent signed reports or a
// control-plane decision, never on one node's word.
type Report struct {
	Reporter string     `json:"reporter"` // Config.Self
	Subject  string     `json:"subject"`
	Kind     Kind       `json:"kind"`
	Incident uint64     `json:"incident"`
	Since    time.Time  `json:"since"`
	At       time.Time  `json:"at"`
	Evidence []Evidence `json:"evidence"`
}

// ReportLabel is the domain-separation label in front of a report's signing bytes.
const ReportLabel = "x0t-heal-report-v1"

// SigningBytes is the canonical byte string to sign: the label, a newline, and
// the report as JSON with times in UTC. Field order is fixed by the struct, so
// the bytes are the same on every node.
func (r Report) SigningBytes() []byte {
	r.Since = r.Since.UTC()
	r.At = r.At.UTC()
	b, err := json.Marshal(r)
	if err != nil { // unreachable: evidence values are kept finite
		b = nil
	}
	return append([]byte(ReportLabel+"\n"), b...)
}

// Health is the node's health state with the reasons for it.
type Health struct {
	State   State     `json:"state"`
	Reasons []string  `json:"reasons,omitempty"`
	Since   time.Time `json:"since,omitzero"` // when State last changed
}
