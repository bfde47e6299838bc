package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/overlay"
	"github.com/x0tta6bl4/x0t/policy"
	"github.com/x0tta6bl4/x0t/session"
	"github.com/x0tta6bl4/x0t/transport"
	"github.com/x0tta6bl4/x0t/wire"
)

// The per-packet path, stage by stage, on real nodes: sessions come from real
// handshakes over loopback UDP, then the nodes' loops are stopped and each
// stage is driven directly, so that a benchmark (-benchmem) and a test
// (testing.AllocsPerRun) see exactly that stage's cost. The device is a
// MemDevice (the kernel TUN's read and write are wireguard-go's code; the
// whole path through a kernel TUN is measured in mallocs per packet by
// scripts/bench-throughput.sh).

const (
	// TCP payload bytes: the largest IPv4 packets that a relay carries whole
	// over an IPv4 underlay (see pmtu.go).
	dpPayload = DefaultUnderlayMTU - 28 - directOverhead - wrapOverhead - 40
	dpBatch   = 32 // packets per batch in the batch stages
)

// dpMesh is a line of nodes 0–1–…–k-1, each linked to its neighbours only,
// with sessions up end to end between node 0 and the last node.
type dpMesh struct {
	nodes []*Node
	devs  []*overlay.MemDevice
	conns []*transport.UDPConn
	ins   []*inbound // each node's inbound buffers
	now   time.Time

	drainBufs  [][]byte
	drainSizes []int
	kept       [][]byte // datagrams of a batch that came in more than one read
}

func newDPMesh(tb testing.TB, k int) *dpMesh {
	tb.Helper()
	now := time.Now()
	ca, caKey, trust := newTestCA(tb, now)
	m := &dpMesh{}
	var err error
	keys := make([]*identity.NodeKey, k)
	certs := make([]*identity.Certificate, k)
	for i := range k {
		if keys[i], err = identity.GenerateNodeKey(); err != nil {
			tb.Fatal(err)
		}
		certs[i], err = identity.IssueNode(ca, caKey, identity.NodeTemplate{
			Name:     fmt.Sprintf("n%d", i),
			Addrs:    []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, byte(i + 1)}), 10)},
			Validity: time.Hour, Keys: keys[i].PublicKeys(),
		}, now.Add(-time.Minute))
		if err != nil {
			tb.Fatal(err)
		}
		c, err := transport.ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
		if err != nil {
			tb.Fatal(err)
		}
		m.conns = append(m.conns, c)
		m.devs = append(m.devs, overlay.NewMemDevice(overlay.DefaultMTU, dpBatch))
	}
	for i := range k {
		var pcs []PeerConfig
		for j := range k {
			switch {
			case j == i:
			case j == i-1 || j == i+1:
				pcs = append(pcs, PeerConfig{Cert: certs[j], Endpoints: []netip.AddrPort{m.conns[j].LocalAddr()}})
			default:
				pcs = append(pcs, PeerConfig{Cert: certs[j]}) // reached through the mesh
			}
		}
		n, err := New(Config{Key: keys[i], Cert: certs[i], Trust: trust, Device: m.devs[i], Conn: m.conns[i], Peers: pcs,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			tb.Fatal(err)
		}
		m.nodes = append(m.nodes, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, k)
	for _, n := range m.nodes {
		go func() { n.Run(ctx); done <- struct{}{} }()
	}
	// A policy is in force everywhere, so its check is part of the path.
	rules := &policy.Rules{Allow: []policy.Rule{{Srcs: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10")}, Proto: policy.ProtoTCP}}}
	for _, n := range m.nodes {
		if err := n.SetRules(rules); err != nil {
			tb.Fatal(err)
		}
	}
	// Traffic both ways between the ends brings up every session on the way
	// (and confirms the responders' keypairs).
	first, last := 0, k-1
	if err := m.await(first, last, 30*time.Second); err != nil {
		tb.Fatal(err)
	}
	if err := m.await(last, first, 10*time.Second); err != nil {
		tb.Fatal(err)
	}
	// Stop the loops: the stages are driven by hand from here on. A node's
	// loops end when its device and conn close; fresh ones on the same
	// addresses take their place.
	cancel()
	for i, n := range m.nodes {
		addr := m.conns[i].LocalAddr()
		m.devs[i].Close()
		m.conns[i].Close()
		<-done
		n.Wait()
		c, err := transport.ListenUDP(addr)
		if err != nil {
			tb.Fatal(err)
		}
		m.conns[i] = c
		m.devs[i] = overlay.NewMemDevice(overlay.DefaultMTU, dpBatch)
		n.cfg.Conn, n.cfg.Device = c, m.devs[i]
	}
	tb.Cleanup(func() {
		for i := range m.nodes {
			m.devs[i].Close()
			m.conns[i].Close()
		}
	})
	m.now = time.Now()
	for _, n := range m.nodes {
		m.ins = append(m.ins, n.newInbound())
	}
	m.drainBufs, m.drainSizes, m.kept = make([][]byte, dpBatch), make([]int, dpBatch), make([][]byte, dpBatch)
	for i := range m.kept {
		m.kept[i] = make([]byte, 65535)
	}
	for i := range m.drainBufs {
		m.drainBufs[i] = make([]byte, 65535)
	}
	return m
}

// await injects packets from node i to node j until one arrives.
func (m *dpMesh) await(i, j int, timeout time.Duration) error {
	pkt := m.packet(i, j)
	bufs, sizes := [][]byte{make([]byte, 65535)}, []int{0}
	got := make(chan error, 1)
	go func() {
		_, err := m.devs[j].ReadWritten(bufs, sizes)
		got <- err
	}()
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := m.devs[i].Inject(pkt); err != nil {
			return err
		}
		select {
		case err := <-got:
			return err
		case <-tick.C:
		case <-deadline:
			return errors.New("no session came up between the ends of the line")
		}
	}
}

// packet is a TCP packet with dpPayload bytes from node i to node j.
func (m *dpMesh) packet(i, j int) []byte {
	seg := make([]byte, 20+dpPayload)
	seg[0], seg[1], seg[2], seg[3] = 0x9c, 0x40, 0x14, 0x51 // 40000 → 5201
	seg[12] = 5 << 4
	return overlay.PacketIPv4(m.addr(i), m.addr(j), policy.ProtoTCP, seg)
}

func (m *dpMesh) addr(i int) netip.Addr { return netip.AddrFrom4([4]byte{100, 64, 0, byte(i + 1)}) }

// peer returns node i's peer j.
func (m *dpMesh) peer(i, j int) *Peer {
	return m.nodes[i].peers.Load().byID[m.nodes[j].ID()]
}

// A stage is one step of the per-packet path, run on one packet (or on one
// batch of packets) per call. It returns an error rather than failing, so
// that the test and the benchmark share it.
type stage struct {
	name    string
	packets int // packets one call handles
	run     func() error
}

// stages returns the stages of the path from node `from` to node `to`, the
// last node of the line: single-packet stages on the first hop, then the whole
// path in batches, through every relay on the way.
func (m *dpMesh) stages(from, to int) []stage {
	src, next := m.nodes[from], m.nodes[from+1]
	p := m.peer(from, to)
	pkt := m.packet(from, to)
	now := m.now
	buf := make([]byte, headroom+len(pkt)+2*wire.TagSize)
	var sealed transport.Message
	var ad session.RelayScratch
	seal := func() error {
		copy(buf[headroom:], pkt)
		msg, err := src.encap(p, buf, len(pkt), &ad, now)
		if err != nil {
			return fmt.Errorf("encap: %w", err)
		}
		sealed = msg
		return nil
	}
	one := []transport.Message{{}}
	devBufs, devSizes := make([][]byte, dpBatch), make([]int, dpBatch)
	for i := range devBufs {
		devBufs[i] = make([]byte, headroom+overlay.DefaultMTU+2*wire.TagSize)
	}
	tunBufs := [][]byte{make([]byte, offset+len(pkt))}
	copy(tunBufs[0][offset:], pkt)
	o := src.newOutbound()

	return []stage{
		{"device-read", 1, func() error {
			if err := m.devs[from].Inject(pkt); err != nil {
				return err
			}
			_, err := m.devs[from].Read(devBufs, devSizes, headroom)
			return err
		}},
		{"route", 1, func() error {
			d, ok := overlay.ParseDst(pkt)
			if !ok {
				return errors.New("no destination address")
			}
			q := src.peers.Load().byAddr[d]
			if q == nil {
				return errors.New("no peer owns the destination")
			}
			if !q.direct() && src.nextHop(q.id, identity.NodeID{}) == nil {
				return errors.New("no next hop")
			}
			return nil
		}},
		{"policy", 1, func() error {
			src.fw.noteOutbound(pkt, now)
			if !m.nodes[to].fw.allowInbound(pkt, now) {
				return errors.New("policy refused the packet")
			}
			return nil
		}},
		{"seal", 1, seal},
		{"send+receive", 1, func() error {
			if err := seal(); err != nil {
				return err
			}
			one[0] = sealed
			if err := src.cfg.Conn.WriteBatch(one); err != nil {
				return err
			}
			return m.receive(from+1, 1)
		}},
		{"seal+open+replay", 1, func() error {
			if err := seal(); err != nil {
				return err
			}
			in := m.ins[from+1]
			b := m.kept[0][:copy(m.kept[0], sealed.Buf[:sealed.N])]
			if wire.PacketType(b) == wire.TypeRelay { // the link layer of a relayed packet
				idx, counter, err := wire.ParseRelayHeader(b)
				if err != nil {
					return err
				}
				e, ok := next.lookupIndex(in, idx)
				if !ok {
					return errors.New("unknown index")
				}
				return e.kp.OpenRelay(b, counter, &in.relayAD, now)
			}
			if _, _, ok := next.openSession(in, b, now); !ok {
				return errors.New("open failed")
			}
			return nil
		}},
		{"device-write", 1, func() error {
			if _, err := m.devs[to].Write(tunBufs, offset); err != nil {
				return err
			}
			return m.drain(to, 1)
		}},
		{"path-batch", dpBatch, func() error {
			for i := range dpBatch {
				o.sizes[i] = copy(o.bufs[i][headroom:], pkt)
			}
			src.sealBatch(o, dpBatch, now)
			for i := from + 1; i <= to; i++ {
				if err := m.receive(i, dpBatch); err != nil {
					return err
				}
				m.nodes[i].openBatch(m.ins[i], dpBatch, now) // relays forward, the last node writes
			}
			return m.drain(to, dpBatch)
		}},
	}
}

// receive reads count datagrams into node i's inbound messages, as views
// like the inbound loop. Should they come in more than one read, those of the
// earlier reads are copied out of the conn's buffers, which the next read
// reuses.
func (m *dpMesh) receive(i, count int) error {
	in := m.ins[i]
	for got := 0; got < count; {
		in.msgs[got].Buf = nil
		k, err := m.nodes[i].cfg.Conn.ReadBatch(in.msgs[got:count])
		if err != nil {
			return err
		}
		if got += k; got < count {
			for j := got - k; j < got; j++ {
				mb := &in.msgs[j]
				mb.Buf = m.kept[j][:copy(m.kept[j], mb.Buf[:mb.N])]
			}
		}
	}
	return nil
}

// drain takes count packets that node i wrote from its device.
func (m *dpMesh) drain(i, count int) error {
	for got := 0; got < count; {
		k, err := m.devs[i].ReadWritten(m.drainBufs, m.drainSizes)
		if err != nil {
			return err
		}
		got += k
	}
	if w := m.nodes[i].stats.RxPackets.Load(); w == 0 {
		return errors.New("the destination delivered nothing")
	}
	return nil
}

// TestDatapathDoesNotAllocate asserts that every stage of the per-packet path
// allocates nothing, directly between neighbours and through a relay.
func TestDatapathDoesNotAllocate(t *testing.T) {
	for _, k := range []int{2, 3} {
		m := newDPMesh(t, k)
		for _, s := range m.stages(0, k-1) {
			t.Run(fmt.Sprintf("hops=%d/%s", k-1, s.name), func(t *testing.T) {
				var err error
				allocs := testing.AllocsPerRun(200, func() {
					if e := s.run(); e != nil && err == nil {
						err = e
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				if allocs != 0 {
					t.Fatalf("%.2f allocations per call (%d packets)", allocs, s.packets)
				}
			})
		}
	}
}

// BenchmarkDatapath reports each stage's cost per packet; run with -benchmem.
func BenchmarkDatapath(b *testing.B) {
	for _, k := range []int{2, 3} {
		m := newDPMesh(b, k)
		for _, s := range m.stages(0, k-1) {
			b.Run(fmt.Sprintf("hops=%d/%s", k-1, s.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(dpPayload * s.packets))
				for b.Loop() {
					if err := s.run(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*s.packets), "ns/packet")
			})
		}
	}
}

// TestRelayedPacketTooBig: a packet that fits the device but not a relayed
// datagram is dropped, counted, and answered with an ICMP packet-too-big from
// the relay's address carrying the relayed path's MTU; one that fits passes.
func TestRelayedPacketTooBig(t *testing.T) {
	m := newDPMesh(t, 3)
	src := m.nodes[0]
	o := src.newOutbound()
	big := func(n int) []byte {
		seg := make([]byte, n-20)
		seg[12] = 5 << 4
		return overlay.PacketIPv4(m.addr(0), m.addr(2), policy.ProtoTCP, seg)
	}
	limit := DefaultUnderlayMTU - 28 - directOverhead - wrapOverhead
	for _, size := range []int{limit + 1, overlay.DefaultMTU} {
		o.sizes[0] = copy(o.bufs[0][headroom:], big(size))
		o.sizes[1] = copy(o.bufs[1][headroom:], big(size)) // the same burst: one answer
		before := src.stats.DropTooBig.Load()
		src.sealBatch(o, 2, m.now)
		if got := src.stats.DropTooBig.Load() - before; got != 2 {
			t.Fatalf("%d bytes: %d drops counted, want 2", size, got)
		}
		bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
		if _, err := m.devs[0].ReadWritten(bufs, sizes); err != nil {
			t.Fatal(err)
		}
		msg := bufs[0][:sizes[0]]
		if msg[9] != policy.ProtoICMP || msg[20] != 3 || msg[21] != 4 {
			t.Fatalf("%d bytes: the device got %x, not an ICMP fragmentation-needed", size, msg[:24])
		}
		if netip.AddrFrom4([4]byte(msg[12:16])) != m.addr(1) || netip.AddrFrom4([4]byte(msg[16:20])) != m.addr(0) {
			t.Fatalf("ICMP from %v to %v, want from the relay to the sender", msg[12:16], msg[16:20])
		}
		if mtu := int(msg[26])<<8 | int(msg[27]); mtu != limit {
			t.Fatalf("advertised MTU %d, want %d", mtu, limit)
		}
	}
	if q, w := m.devs[0].Queued(); q != 0 || w != 0 {
		t.Fatalf("one answer per burst: %d more written", w)
	}
	if got := src.stats.PacketTooBigSent.Load(); got != 2 {
		t.Fatalf("PacketTooBigSent = %d, want 2", got)
	}
	// A packet of exactly the limit goes through the relay.
	o.sizes[0] = copy(o.bufs[0][headroom:], big(limit))
	src.sealBatch(o, 1, m.now)
	if err := m.receive(1, 1); err != nil {
		t.Fatal(err)
	}
}
