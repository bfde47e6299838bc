package node

import (
	"net/netip"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/policy"
)

var (
	addrA = netip.MustParseAddr("100.64.0.1")
	addrB = netip.MustParseAddr("100.64.0.2")
)

func tcpPacket(src, dst netip.Addr, sport, dport uint16) []byte {
	seg := make([]byte, 20)
	seg[0], seg[1] = byte(sport>>8), byte(sport)
	seg[2], seg[3] = byte(dport>>8), byte(dport)
	seg[12] = 5 << 4
	if src.Is4() {
		return overlay.PacketIPv4(src, dst, policy.ProtoTCP, seg)
	}
	return overlay.PacketIPv6(src, dst, policy.ProtoTCP, seg)
}

func echoPacket(src, dst netip.Addr, reply bool, id uint16) []byte {
	b := make([]byte, 8)
	b[0] = 8
	if reply {
		b[0] = 0
	}
	b[4], b[5] = byte(id>>8), byte(id)
	return overlay.PacketIPv4(src, dst, policy.ProtoICMP, b)
}

func TestParseFlow(t *testing.T) {
	f, ok := parseFlow(tcpPacket(addrA, addrB, 40000, 22))
	if !ok || f.proto != policy.ProtoTCP || f.sport != 40000 || f.dport != 22 || !f.hasPorts || f.src != addrA || f.dst != addrB {
		t.Fatalf("tcp/4: %+v", f)
	}
	v6a, v6b := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	f, ok = parseFlow(tcpPacket(v6a, v6b, 1, 443))
	if !ok || f.dport != 443 || f.src != v6a {
		t.Fatalf("tcp/6: %+v", f)
	}
	f, ok = parseFlow(echoPacket(addrA, addrB, true, 77))
	if !ok || !f.isEcho || !f.echoReply || f.dport != 77 {
		t.Fatalf("echo reply: %+v", f)
	}
	frag := tcpPacket(addrA, addrB, 1, 22)
	frag[6], frag[7] = 0x00, 0x10 // a later fragment
	if f, ok := parseFlow(frag); !ok || f.hasPorts {
		t.Fatalf("fragment: %+v", f)
	}
	for _, bad := range [][]byte{nil, {0x45}, {0x60, 0, 0}, {0x15, 0, 0, 0}} {
		if _, ok := parseFlow(bad); ok {
			t.Errorf("%x parsed", bad)
		}
	}
}

func TestFirewall(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	fw := firewall{flows: newConntrack()}
	// No policy: everything passes.
	if !fw.allowInbound(tcpPacket(addrA, addrB, 1, 9999), now) {
		t.Fatal("no policy denied a packet")
	}
	r := policy.Rules{Allow: []policy.Rule{{Srcs: []netip.Prefix{netip.PrefixFrom(addrA, 32)}, Proto: policy.ProtoTCP,
		Ports: []policy.PortRange{{First: 22, Last: 22}}}}}
	fw.filter.Store(r.Compile())
	// We are B here: A may reach our port 22 and nothing else.
	if !fw.allowInbound(tcpPacket(addrA, addrB, 40000, 22), now) {
		t.Fatal("allowed port denied")
	}
	if fw.allowInbound(tcpPacket(addrA, addrB, 40000, 23), now) {
		t.Fatal("other port allowed")
	}
	if fw.allowInbound(echoPacket(addrA, addrB, false, 5), now) {
		t.Fatal("icmp allowed by a tcp rule")
	}
	// Replies to flows we opened pass; the same packet unsolicited does not.
	reply := tcpPacket(addrA, addrB, 443, 50000)
	if fw.allowInbound(reply, now) {
		t.Fatal("unsolicited packet allowed")
	}
	fw.noteOutbound(tcpPacket(addrB, addrA, 50000, 443), now)
	if !fw.allowInbound(reply, now) {
		t.Fatal("reply to our flow denied")
	}
	if fw.allowInbound(reply, now.Add(flowTTLTCP+time.Second)) {
		t.Fatal("reply allowed after the flow expired")
	}
	fw.noteOutbound(echoPacket(addrB, addrA, false, 9), now)
	if !fw.allowInbound(echoPacket(addrA, addrB, true, 9), now) {
		t.Fatal("echo reply denied")
	}
	if fw.allowInbound(echoPacket(addrA, addrB, false, 9), now) {
		t.Fatal("echo request with a tracked id allowed")
	}
	fw.flows.expire(now.Add(time.Hour))
	if fw.flows.size.Load() != 0 {
		t.Fatalf("%d flows after expiry", fw.flows.size.Load())
	}
}

func TestFirewallDoesNotAllocate(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	fw := firewall{flows: newConntrack()}
	r := policy.Rules{Allow: []policy.Rule{{Srcs: []netip.Prefix{netip.PrefixFrom(addrA, 32)}, Proto: policy.ProtoTCP}}}
	fw.filter.Store(r.Compile())
	in, out := tcpPacket(addrA, addrB, 1, 22), tcpPacket(addrB, addrA, 22, 1)
	fw.noteOutbound(out, now)
	if a := testing.AllocsPerRun(1000, func() {
		fw.noteOutbound(out, now)
		fw.allowInbound(in, now)
	}); a != 0 {
		t.Fatalf("%.1f allocations per packet", a)
	}
}

func FuzzParseFlow(f *testing.F) {
	f.Add(tcpPacket(addrA, addrB, 1, 22))
	f.Add(echoPacket(addrA, addrB, false, 1))
	f.Add(tcpPacket(netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), 1, 2))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		fl, ok := parseFlow(pkt)
		if ok && !fl.src.IsValid() {
			t.Fatal("flow without a source")
		}
	})
}
