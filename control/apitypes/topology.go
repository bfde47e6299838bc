package apitypes

import "time"

// Link states of a mesh topology, worst last.
const (
	LinkUnknown  = "unknown"  // no fresh report from either end measures the link
	LinkGood     = "good"     // up, low loss and RTT
	LinkDegraded = "degraded" // up, but lossy or slow
	LinkBad      = "bad"      // up, but very lossy or very slow
	LinkDown     = "down"     // an end's link monitor declared it down
)

// Topology is a mesh as its nodes last reported it: the nodes, and the
// direct links between them with their health.
type Topology struct {
	Mesh       string         `json:"mesh"`
	Time       time.Time      `json:"time" doc:"When the control plane built this view."`
	StaleAfter string         `json:"stale_after" doc:"A heartbeat older than this is not used for link health (Go duration)."`
	Nodes      []TopologyNode `json:"nodes"`
	Links      []TopologyLink `json:"links"`
}

// TopologyNode is one node of a topology.
type TopologyNode struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Status    string     `json:"status" enum:"pending,approved"`
	IPv4      string     `json:"ipv4"`
	IPv6      string     `json:"ipv6,omitempty"`
	Tags      []string   `json:"tags"`
	Online    bool       `json:"online" doc:"Holds a netmap stream now."`
	Health    string     `json:"health,omitempty" doc:"healthy, degraded or critical, as last reported."`
	Reasons   []string   `json:"reasons,omitempty"`
	LastSeen  *time.Time `json:"last_seen,omitempty" doc:"Time of the last heartbeat."`
	Age       float64    `json:"age_seconds,omitempty" doc:"Seconds since the last heartbeat."`
	Stale     bool       `json:"stale" doc:"No heartbeat within stale_after."`
	Uptime    int64      `json:"uptime_seconds,omitempty"`
	RxBytes   uint64     `json:"rx_bytes"`
	TxBytes   uint64     `json:"tx_bytes"`
	Incidents int        `json:"open_incidents" doc:"Unresolved self-healing incidents in the last heartbeat."`
}

// TopologyLink is the direct link between nodes A and B (A < B), from
// what each end last reported about the other.
type TopologyLink struct {
	A      string       `json:"a" doc:"Node ID (the lower of the two)."`
	B      string       `json:"b" doc:"Node ID."`
	State  string       `json:"state" enum:"unknown,good,degraded,bad,down"`
	RTT    float64      `json:"rtt_ms,omitempty" doc:"Highest smoothed RTT in the fresh reports, milliseconds."`
	Loss   float64      `json:"loss,omitempty" doc:"Highest probe loss ratio in the fresh reports (0 to 1)."`
	Age    float64      `json:"age_seconds" doc:"Seconds since the freshest report."`
	Report []LinkReport `json:"reports" doc:"What each end said, A's first."`
}

// LinkReport is what one end of a link said about it in its last heartbeat.
type LinkReport struct {
	From          string     `json:"from" doc:"Node ID of the reporting end."`
	Link          string     `json:"link,omitempty" doc:"up or down as its link monitor sees it; empty when not monitored."`
	RTT           float64    `json:"rtt_ms,omitempty"`
	Loss          float64    `json:"loss,omitempty"`
	RxBytes       uint64     `json:"rx_bytes"`
	TxBytes       uint64     `json:"tx_bytes"`
	LastHandshake *time.Time `json:"last_handshake,omitempty"`
	Age           float64    `json:"age_seconds"`
	Stale         bool       `json:"stale"`
}
