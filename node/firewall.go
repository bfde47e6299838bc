package node

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/x0tta6bl4/x0t/policy"
)

// The firewall enforces the mesh policy where it belongs: at the receiver. A
// packet from a peer is delivered only if the node's rules allow it, or if it
// answers a flow this node opened (connection tracking, as Nebula does), so
// that "A may reach B on port 22" does not need a second rule for B's replies.

// flowKey identifies a flow from this node's point of view.
type flowKey struct {
	proto  uint8
	local  netip.Addr
	remote netip.Addr
	lport  uint16
	rport  uint16
}

// flowInfo is what the firewall needs from an IP packet's headers.
type flowInfo struct {
	src, dst         netip.Addr
	proto            uint8
	sport, dport     uint16
	hasPorts, isEcho bool // isEcho: an ICMP echo request or reply, dport is its id
	echoReply        bool
}

// parseFlow reads addresses, protocol and ports without allocating. Non-first
// fragments carry no ports and report port 0.
func parseFlow(pkt []byte) (f flowInfo, ok bool) {
	if len(pkt) < 1 {
		return f, false
	}
	var l4 []byte
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return f, false
		}
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < 20 || len(pkt) < ihl {
			return f, false
		}
		f.src = netip.AddrFrom4([4]byte(pkt[12:16]))
		f.dst = netip.AddrFrom4([4]byte(pkt[16:20]))
		f.proto = pkt[9]
		if binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
			return f, true // a later fragment: no transport header
		}
		l4 = pkt[ihl:]
	case 6:
		if len(pkt) < 40 {
			return f, false
		}
		f.src = netip.AddrFrom16([16]byte(pkt[8:24]))
		f.dst = netip.AddrFrom16([16]byte(pkt[24:40]))
		f.proto = pkt[6]
		l4 = pkt[40:]
		// Extension headers other than fragments are rare in the overlay; a
		// packet that uses them is matched on protocol only.
		if f.proto == 44 { // fragment header
			if len(l4) < 8 {
				return f, false
			}
			f.proto = l4[0]
			if binary.BigEndian.Uint16(l4[2:4])&0xfff8 != 0 {
				return f, true
			}
			l4 = l4[8:]
		}
	default:
		return f, false
	}
	switch f.proto {
	case policy.ProtoTCP, policy.ProtoUDP, 132:
		if len(l4) >= 4 {
			f.sport = binary.BigEndian.Uint16(l4[0:2])
			f.dport = binary.BigEndian.Uint16(l4[2:4])
			f.hasPorts = true
		}
	case policy.ProtoICMP, policy.ProtoICMPv6:
		// Echo request/reply: track by identifier so replies find their request.
		if len(l4) >= 8 {
			t := l4[0]
			if t == 8 || t == 0 || t == 128 || t == 129 {
				f.isEcho = true
				f.echoReply = t == 0 || t == 129
				f.dport = binary.BigEndian.Uint16(l4[4:6])
			}
		}
	}
	return f, true
}

// Flow lifetimes after the last packet that refreshed them.
const (
	flowTTLTCP   = 10 * time.Minute
	flowTTLOther = 3 * time.Minute
	maxFlows     = 1 << 16
	flowShards   = 16
)

// conntrack remembers flows this node opened. The outbound loop records them,
// the inbound loop looks replies up; sharding keeps the two from contending.
type conntrack struct {
	shards [flowShards]struct {
		mu    sync.Mutex
		flows map[flowKey]*atomic.Int64 // expiry, unix nanoseconds
	}
	size atomic.Int64
}

func newConntrack() *conntrack {
	c := &conntrack{}
	for i := range c.shards {
		c.shards[i].flows = map[flowKey]*atomic.Int64{}
	}
	return c
}

func (k flowKey) shard() int {
	return int(k.lport^k.rport^uint16(k.proto)) % flowShards
}

// outbound records (or refreshes) the flow of a packet this node sends.
func (c *conntrack) outbound(f flowInfo, now time.Time) {
	k := flowKey{proto: f.proto, local: f.src, remote: f.dst}
	switch {
	case f.hasPorts:
		k.lport, k.rport = f.sport, f.dport
	case f.isEcho:
		k.lport = f.dport
	}
	ttl := flowTTLOther
	if f.proto == policy.ProtoTCP {
		ttl = flowTTLTCP
	}
	exp := now.Add(ttl).UnixNano()
	s := &c.shards[k.shard()]
	s.mu.Lock()
	if e := s.flows[k]; e != nil {
		s.mu.Unlock()
		// Refresh at most every few seconds' worth of change: the store is cheap,
		// but skipping it when fresh avoids cache-line traffic per packet.
		if e.Load() < exp-int64(time.Second) {
			e.Store(exp)
		}
		return
	}
	if c.size.Load() >= maxFlows {
		s.mu.Unlock()
		return // full: new flows need a rule
	}
	e := new(atomic.Int64)
	e.Store(exp)
	s.flows[k] = e
	s.mu.Unlock()
	c.size.Add(1)
}

// isReply reports whether a received packet answers a tracked flow.
func (c *conntrack) isReply(f flowInfo, now time.Time) bool {
	if f.isEcho && !f.echoReply {
		return false // an echo request is never an answer
	}
	k := flowKey{proto: f.proto, local: f.dst, remote: f.src}
	switch {
	case f.hasPorts:
		k.lport, k.rport = f.dport, f.sport
	case f.isEcho:
		k.lport = f.dport
	}
	s := &c.shards[k.shard()]
	s.mu.Lock()
	e := s.flows[k]
	s.mu.Unlock()
	return e != nil && e.Load() > now.UnixNano()
}

// expire drops flows past their lifetime.
func (c *conntrack) expire(now time.Time) {
	t := now.UnixNano()
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.flows {
			if e.Load() <= t {
				delete(s.flows, k)
				c.size.Add(-1)
			}
		}
		s.mu.Unlock()
	}
}

// firewall is the node's current filter and flow table.
type firewall struct {
	filter atomic.Pointer[policy.Filter] // nil: no policy, everything from members is allowed
	flows  *conntrack
}

// allowInbound decides on a decrypted packet from a peer.
func (fw *firewall) allowInbound(pkt []byte, now time.Time) bool {
	f := fw.filter.Load()
	if f == nil {
		return true
	}
	fl, ok := parseFlow(pkt)
	if !ok {
		return false
	}
	port := fl.dport
	if !fl.hasPorts {
		port = 0
	}
	if f.Allow(fl.src, fl.proto, port) {
		return true
	}
	return fw.flows.isReply(fl, now)
}

// noteOutbound tracks a packet this node sends, when a policy is in force.
func (fw *firewall) noteOutbound(pkt []byte, now time.Time) {
	if fw.filter.Load() == nil {
		return
	}
	if fl, ok := parseFlow(pkt); ok {
		fw.flows.outbound(fl, now)
	}
}
