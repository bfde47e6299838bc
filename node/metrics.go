package node

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/x0tta6bl4/x0t/heal"
)

// Prometheus metrics of a node.
//
// The collector reads the node's existing atomic counters (Stats, the
// per-peer counters), its routing table, its link monitors and its MAPE-K
// loop when it is scraped. The packet loops do no metrics work at all: the
// counters they already keep are the metrics, so the hot path stays as
// allocation-free and lock-free as it was.

// Label values are the contract with dashboards and alert rules
// (deploy/grafana): do not rename them.
const (
	labelPeer      = "peer"    // the peer's certificate name
	labelPeerID    = "peer_id" // the peer's node ID (hex), stable across renames
	labelDirection = "direction"
	labelReason    = "reason"
)

// statMetric says which metric, with which label values, exports one Stats
// field. Every Stats field has one (TestMetricsCoverStats).
type statMetric struct {
	desc   *prometheus.Desc
	labels []string
}

// metricNames collects the family names as the descriptors are made.
var metricNames []string

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	metricNames = append(metricNames, name)
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descBytes = newDesc("x0t_node_bytes_total",
		"Plaintext bytes of data packets sent (tx) and delivered to the device (rx), all peers.", labelDirection)
	descPackets = newDesc("x0t_node_packets_total",
		"Data packets sent (tx) and authenticated packets received (rx), all peers.", labelDirection)
	descInitiations = newDesc("x0t_node_handshake_initiations_total",
		"Handshake initiations sent, retries included.")
	descHandshakes = newDesc("x0t_node_handshakes_completed_total",
		"Handshakes completed, either role.")
	descHandshakeFailures = newDesc("x0t_node_handshakes_failed_total",
		"Handshake messages refused, by reason, and our initiations that timed out (reason=timeout).", labelReason)
	descRekeys = newDesc("x0t_node_rekeys_total",
		"Handshakes completed with a peer that already had a session (key rotation), either role.")
	descCookies = newDesc("x0t_node_cookie_replies_sent_total",
		"Cookie replies sent while under handshake load.")
	descKeepalives = newDesc("x0t_node_keepalives_sent_total",
		"Keepalive packets sent.")
	descStaged = newDesc("x0t_node_staged_packets_total",
		"Outbound packets that waited for a session to come up.")
	descForwarded = newDesc("x0t_node_forwarded_packets_total",
		"Packets relayed for other nodes (multi-hop).")
	descLinkChanges = newDesc("x0t_node_link_state_changes_total",
		"Links to neighbours that came up or were found dead (failover triggers).", "state")
	descFailovers = newDesc("x0t_node_failovers_total",
		"Destinations whose traffic moved to a loop-free alternate next hop at once when a link died.")
	descRouteChanges = newDesc("x0t_node_route_changes_total",
		"New routing tables installed.")
	descRouteRejected = newDesc("x0t_node_route_messages_rejected_total",
		"Routing messages refused: forged, replayed, malformed or over the rate limit.")
	descDrops = newDesc("x0t_node_packets_dropped_total",
		"Packets dropped, by reason.", labelReason)
	descTooBigSent = newDesc("x0t_node_packet_too_big_sent_total",
		"ICMP packet-too-big messages written to the device for packets too big for their relayed path.")
	descBusyPoll = newDesc("x0t_node_busy_polls_total",
		"Low-latency mode: polls of the device or socket that saw a packet (ready) or whose window closed first (expired).", "result")
	descHeal = newDesc("x0t_node_heal_actions_total",
		"Actions the self-healing (MAPE-K) loop issued, by action.", "action")

	descInfo = newDesc("x0t_node_info",
		"Always 1; labels name this node.", "node", "node_id", "mesh", "suite")
	descPeers = newDesc("x0t_node_peers",
		"Peers this node knows (configured, from the netmap, or that contacted it).")
	descRoutes = newDesc("x0t_node_routes",
		"Destinations in the routing table.")
	descHealth = newDesc("x0t_node_health_state",
		"Health from the self-healing loop: 1 for the current state, 0 for the others.", "state")

	descPeerBytes = newDesc("x0t_node_peer_bytes_total",
		"Plaintext bytes exchanged with one peer, by direction.", labelPeer, labelPeerID, labelDirection)
	descPeerPackets = newDesc("x0t_node_peer_packets_total",
		"Data packets exchanged with one peer, by direction.", labelPeer, labelPeerID, labelDirection)
	descPeerUp = newDesc("x0t_node_peer_session_up",
		"1 while a session with the peer exists.", labelPeer, labelPeerID)
	descPeerDirect = newDesc("x0t_node_peer_direct",
		"1 while traffic for the peer goes straight to it, 0 while it goes through the mesh.", labelPeer, labelPeerID)
	descPeerHandshake = newDesc("x0t_node_peer_last_handshake_timestamp_seconds",
		"Unix time of the last handshake completed with the peer.", labelPeer, labelPeerID)

	descLinkUp = newDesc("x0t_node_link_up",
		"1 while link monitoring finds the direct link to the neighbour alive.", labelPeer, labelPeerID)
	descLinkRTT = newDesc("x0t_node_link_rtt_seconds",
		"Smoothed round-trip time of the direct link to the neighbour.", labelPeer, labelPeerID)
	descLinkLoss = newDesc("x0t_node_link_loss_ratio",
		"Fraction of link probes to the neighbour that went unanswered (0..1).", labelPeer, labelPeerID)
	descLinkMetric = newDesc("x0t_node_link_metric",
		"Routing metric this node advertises for the link (raised while self-healing avoids it).", labelPeer, labelPeerID)
)

// statMetrics maps each Stats field to its metric.
var statMetrics = map[string]statMetric{
	"RxBytes":   {descBytes, []string{"rx"}},
	"TxBytes":   {descBytes, []string{"tx"}},
	"RxPackets": {descPackets, []string{"rx"}},
	"TxPackets": {descPackets, []string{"tx"}},

	"HandshakesSent":      {descInitiations, nil},
	"HandshakesCompleted": {descHandshakes, nil},
	"Rekeys":              {descRekeys, nil},
	"CookiesSent":         {descCookies, nil},
	"Keepalives":          {descKeepalives, nil},
	"Staged":              {descStaged, nil},
	"Forwarded":           {descForwarded, nil},
	"LinkUps":             {descLinkChanges, []string{"up"}},
	"LinkDowns":           {descLinkChanges, []string{"down"}},
	"RouteChanges":        {descRouteChanges, nil},
	"Failovers":           {descFailovers, nil},
	"RouteRejected":       {descRouteRejected, nil},
	"BusyPollReady":       {descBusyPoll, []string{"ready"}},
	"BusyPollExpired":     {descBusyPoll, []string{"expired"}},

	"DropNoRoute":        {descDrops, []string{"no_route"}},
	"DropStageFull":      {descDrops, []string{"stage_full"}},
	"DropUnknownSession": {descDrops, []string{"unknown_session"}},
	"DropAuth":           {descDrops, []string{"auth"}},
	"DropReplay":         {descDrops, []string{"replay"}},
	"DropExpired":        {descDrops, []string{"expired"}},
	"DropSpoofedSource":  {descDrops, []string{"spoofed_source"}},
	"DropPolicy":         {descDrops, []string{"policy"}},
	"DropMalformed":      {descDrops, []string{"malformed"}},
	"DropQueueFull":      {descDrops, []string{"queue_full"}},
	"DropFragment":       {descDrops, []string{"fragment"}},
	"DropHopLimit":       {descDrops, []string{"hop_limit"}},
	"DropTooBig":         {descDrops, []string{"too_big"}},
	"PacketTooBigSent":   {descTooBigSent, nil},

	"HandshakesTimedOut": {descHandshakeFailures, []string{"timeout"}},
	"HSBadMAC":           {descHandshakeFailures, []string{"bad_mac"}},
	"HSDecrypt":          {descHandshakeFailures, []string{"decrypt"}},
	"HSCertWrongCA":      {descHandshakeFailures, []string{"cert_wrong_ca"}},
	"HSCertExpired":      {descHandshakeFailures, []string{"cert_expired"}},
	"HSCertSignature":    {descHandshakeFailures, []string{"cert_signature"}},
	"HSCertRevoked":      {descHandshakeFailures, []string{"cert_revoked"}},
	"HSCertOther":        {descHandshakeFailures, []string{"cert_other"}},
	"HSReplay":           {descHandshakeFailures, []string{"replay"}},
	"HSFlood":            {descHandshakeFailures, []string{"flood"}},
	"HSRateLimited":      {descHandshakeFailures, []string{"rate_limited"}},
	"HSUnexpected":       {descHandshakeFailures, []string{"unexpected"}},
	"HSMalformedMessage": {descHandshakeFailures, []string{"malformed"}},

	"HealReroute":         {descHeal, []string{string(heal.ActReroute)}},
	"HealRestore":         {descHeal, []string{string(heal.ActRestore)}},
	"HealRekey":           {descHeal, []string{string(heal.ActRekey)}},
	"HealQuarantine":      {descHeal, []string{string(heal.ActQuarantine)}},
	"HealAlert":           {descHeal, []string{string(heal.ActAlert)}},
	"HealSwitchTransport": {descHeal, []string{string(heal.ActSwitchTransport)}},
	"HealLowerMTU":        {descHeal, []string{string(heal.ActLowerMTU)}},
}

// countHealAction counts an action the MAPE-K loop issued (control loop).
func (s *Stats) countHealAction(t heal.ActionType) {
	switch t {
	case heal.ActReroute:
		s.HealReroute.Add(1)
	case heal.ActRestore:
		s.HealRestore.Add(1)
	case heal.ActRekey:
		s.HealRekey.Add(1)
	case heal.ActQuarantine:
		s.HealQuarantine.Add(1)
	case heal.ActAlert:
		s.HealAlert.Add(1)
	case heal.ActSwitchTransport:
		s.HealSwitchTransport.Add(1)
	case heal.ActLowerMTU:
		s.HealLowerMTU.Add(1)
	}
}

// healthStates are the values of x0t_node_health_state's label, all of which
// are always exported so that a state's series exists before it happens.
var healthStates = []heal.State{heal.Healthy, heal.Degraded, heal.Critical}

// allDescs lists every descriptor the collector can send.
func allDescs() []*prometheus.Desc {
	seen := map[*prometheus.Desc]bool{}
	var out []*prometheus.Desc
	for _, m := range statMetrics {
		if !seen[m.desc] {
			seen[m.desc] = true
			out = append(out, m.desc)
		}
	}
	return append(out, descInfo, descPeers, descRoutes, descHealth,
		descPeerBytes, descPeerPackets, descPeerUp, descPeerDirect, descPeerHandshake,
		descLinkUp, descLinkRTT, descLinkLoss, descLinkMetric)
}

// MetricNames returns the name of every metric family the node exports
// (besides the Go runtime's go_* and the process's process_*), sorted. Some
// appear only when they have a series (per-peer and per-link families need a
// peer), so this is the list to check dashboards against.
func MetricNames() []string {
	names := slices.Clone(metricNames)
	slices.Sort(names)
	return slices.Compact(names)
}

// collector exports a node's metrics when scraped.
type collector struct{ n *Node }

// NewCollector returns a Prometheus collector of n's metrics. It reads
// counters at scrape time; register it with one registry per node.
func NewCollector(n *Node) prometheus.Collector { return collector{n} }

// NewRegistry returns a registry with the Go runtime and process collectors
// and, when n is not nil, the node's collector (a caller that starts serving
// before the node exists registers NewCollector later). Each node gets its own
// registry, so several nodes in one process (lab, tests) do not collide.
func NewRegistry(n *Node) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if n != nil {
		reg.MustRegister(NewCollector(n))
	}
	return reg
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs() {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}

	// Every mapped series is sent, so each family exists from the start
	// (a field not in Stats reads as zero).
	snap := n.stats.Snapshot()
	for field, m := range statMetrics {
		counter(m.desc, snap[field], m.labels...)
	}

	cert := n.cfg.Cert
	gauge(descInfo, 1, cert.Name, cert.ID().String(), cert.Mesh, SuiteName(n.suite))

	peers := n.peers.Load()
	gauge(descPeers, float64(len(peers.byID)))
	for id, p := range peers.byID {
		name, ids := p.Name(), id.String()
		counter(descPeerBytes, p.rxBytes.Load(), name, ids, "rx")
		counter(descPeerBytes, p.txBytes.Load(), name, ids, "tx")
		counter(descPeerPackets, p.rxPackets.Load(), name, ids, "rx")
		counter(descPeerPackets, p.txPackets.Load(), name, ids, "tx")
		gauge(descPeerUp, b2f(p.current.Load() != nil), name, ids)
		gauge(descPeerDirect, b2f(p.direct()), name, ids)
		if t := p.lastHandshake.Load(); t != 0 {
			gauge(descPeerHandshake, float64(t)/1e9, name, ids)
		}
	}

	gauge(descRoutes, float64(n.mesh.table.Load().Len()))

	// Link monitors belong to the control loop: Links reads them there.
	for _, l := range n.Links() {
		gauge(descLinkUp, b2f(l.State == "up"), l.Peer, l.ID)
		gauge(descLinkRTT, l.RTT.Seconds(), l.Peer, l.ID)
		gauge(descLinkLoss, l.Loss, l.Peer, l.ID)
		gauge(descLinkMetric, float64(l.Metric), l.Peer, l.ID)
	}

	state := n.healer.Health().State
	if state == "" {
		state = heal.Healthy
	}
	for _, s := range healthStates {
		gauge(descHealth, b2f(s == state), string(s))
	}
}
