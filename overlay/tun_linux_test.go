package overlay

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/x0tta6bl4/x0t/internal/testutil"
)

const testTUN = "x0t-test0"

var (
	meshV4  = netip.MustParsePrefix("100.64.0.1/10")
	meshV6  = netip.MustParsePrefix("fd5e:1:2::1/48")
	extraV4 = netip.MustParsePrefix("192.0.2.0/24")
	extraV6 = netip.MustParsePrefix("2001:db8:77::/48")
)

func testConfig() TUNConfig {
	return TUNConfig{
		Name:   testTUN,
		MTU:    1400,
		Addrs:  []netip.Prefix{meshV4, meshV6},
		Routes: []netip.Prefix{extraV4, extraV6},
	}
}

var nsSeq atomic.Int32

// enterNetns moves the test goroutine into a fresh network namespace that is
// deleted when the test ends. The goroutine stays locked to its thread and is
// never unlocked, so Go discards the thread afterwards and nothing else ever
// runs in that namespace by accident. Sockets must be created on this
// goroutine: other goroutines run in the host's namespace.
func enterNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	testutil.RequireRoot(t)
	runtime.LockOSThread()
	name := fmt.Sprintf("x0t-ov-%d-%d", os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	if err := netns.Set(ns); err != nil {
		t.Fatalf("enter netns %s: %v", name, err)
	}
	requireInNetns(t, ns)
	h := nlHandle(t, ns)
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("lo up: %v", err)
	}
	return ns
}

// requireInNetns guards every step that creates a socket or a device: it
// must never happen in the host's namespace.
func requireInNetns(t *testing.T, ns netns.NsHandle) {
	t.Helper()
	cur, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	if !cur.Equal(ns) {
		t.Fatal("not in the test network namespace: refusing to touch the host's")
	}
}

func nlHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// createTUN creates the test TUN in ns and closes it at the end of the test.
func createTUN(t *testing.T, ns netns.NsHandle, cfg TUNConfig) *TUN {
	t.Helper()
	requireInNetns(t, ns)
	tn, err := CreateTUN(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tn.Close(); err != nil {
			t.Error(err)
		}
	})
	return tn
}

func routeDsts(t *testing.T, h *netlink.Handle, index int) []string {
	t.Helper()
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for _, r := range routes {
		if r.Dst != nil {
			dsts = append(dsts, r.Dst.String())
		}
	}
	return dsts
}

func TestTUNConfigureAndClose(t *testing.T) {
	ns := enterNetns(t)
	h := nlHandle(t, ns)
	tn, err := CreateTUN(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if tn.Name() != testTUN {
		t.Errorf("Name = %q", tn.Name())
	}
	if name, err := tn.Device().Name(); err != nil || name != testTUN {
		t.Errorf("Device().Name = %q, %v", name, err)
	}
	link, err := h.LinkByName(testTUN)
	if err != nil {
		t.Fatal(err)
	}
	attrs := link.Attrs()
	index := attrs.Index
	if attrs.Flags&net.FlagUp == 0 {
		t.Error("link is not up")
	}
	if attrs.MTU != 1400 {
		t.Errorf("kernel MTU = %d, want 1400", attrs.MTU)
	}
	if mtu, err := tn.Device().MTU(); err != nil || mtu != 1400 {
		t.Errorf("Device().MTU = %d, %v", mtu, err)
	}

	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range addrs {
		got = append(got, a.IPNet.String())
		if a.IP.To4() == nil && a.IP.IsGlobalUnicast() && a.Flags&unix.IFA_F_TENTATIVE != 0 {
			t.Errorf("%v is tentative: DAD was not skipped", a.IPNet)
		}
	}
	for _, want := range []string{"100.64.0.1/10", "fd5e:1:2::1/48"} {
		if !slices.Contains(got, want) {
			t.Errorf("address %s missing; have %v", want, got)
		}
	}
	dsts := routeDsts(t, h, index)
	for _, want := range []string{"100.64.0.0/10", "fd5e:1:2::/48", "192.0.2.0/24", "2001:db8:77::/48"} {
		if !slices.Contains(dsts, want) {
			t.Errorf("route %s missing; have %v", want, dsts)
		}
	}
	for _, dst := range []string{"100.127.255.254", "fd5e:1:2:ffff::9", "192.0.2.9", "2001:db8:77::9"} {
		rs, err := h.RouteGet(net.ParseIP(dst))
		if err != nil || len(rs) == 0 || rs[0].LinkIndex != index {
			t.Errorf("route to %s does not use the TUN: %v %v", dst, rs, err)
		}
	}
	t.Logf("BatchSize = %d (>1 means wireguard-go enabled IFF_VNET_HDR offloads)", tn.Device().BatchSize())
	if out, err := exec.Command("ethtool", "-k", testTUN).CombinedOutput(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "segmentation-offload") || strings.Contains(l, "checksumming:") ||
				strings.Contains(l, "tx-udp-segmentation") || strings.Contains(l, "tx-tcp") {
				t.Log(strings.TrimSpace(l))
			}
		}
	}

	// Close wakes a blocked reader with os.ErrClosed.
	readErr := make(chan error, 1)
	go func() {
		bufs, sizes := newBufs(tn.Device().BatchSize(), 65535)
		for {
			if _, err := tn.Device().Read(bufs, sizes, off); err != nil {
				readErr <- err
				return
			}
		}
	}()
	time.Sleep(10 * time.Millisecond)
	if err := tn.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Close did not unblock Read")
	}
	if _, err := tn.Device().Write([][]byte{withHeadroom(PacketIPv4(v4b, v4a, ProtoUDP, nil))}, off); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
	if _, err := h.LinkByName(testTUN); !isLinkNotFound(err) {
		t.Errorf("link still there after Close: %v", err)
	}
	if dsts := routeDsts(t, h, index); len(dsts) != 0 {
		t.Errorf("routes left after Close: %v", dsts)
	}
	for _, dst := range []string{"100.64.0.2", "192.0.2.9", "2001:db8:77::9", "fd5e:1:2::2"} {
		if rs, err := h.RouteGet(net.ParseIP(dst)); err == nil && len(rs) > 0 {
			t.Errorf("%s still routed after Close: %v", dst, rs)
		}
	}
	if err := tn.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := tn.Device().Close(); err != nil {
		t.Errorf("Device().Close after Close: %v", err)
	}
	if _, err := tn.Device().MTU(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("MTU after Close: %v", err)
	}
	// The name is free again at once.
	createTUN(t, ns, testConfig())
}

func name(d Device) string {
	n, _ := d.Name()
	return n
}

// tunReader reads a device in the background and hands over copies.
type tunReader struct {
	pkts     chan []byte
	maxBatch atomic.Int32
	reads    atomic.Int32
}

func startReader(t *testing.T, dev Device) *tunReader {
	r := &tunReader{pkts: make(chan []byte, 4096)}
	go func() {
		bufs, sizes := newBufs(dev.BatchSize(), 65535)
		for {
			n, err := dev.Read(bufs, sizes, off)
			if errors.Is(err, tun.ErrTooManySegments) {
				continue
			}
			if err != nil {
				return
			}
			r.reads.Add(1)
			if int32(n) > r.maxBatch.Load() {
				r.maxBatch.Store(int32(n))
			}
			for i := range n {
				select {
				case r.pkts <- bytes.Clone(bufs[i][off : off+sizes[i]]):
				default:
				}
			}
		}
	}()
	return r
}

// await returns the next packet match accepts, skipping others (the kernel
// also sends IPv6 router solicitations and MLD reports into the device).
func (r *tunReader) await(t *testing.T, what string, match func([]byte) bool) []byte {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p := <-r.pkts:
			if match(p) {
				return p
			}
		case <-timeout:
			t.Fatalf("timeout waiting for %s from the TUN", what)
		}
	}
}

// l4 returns the transport protocol and payload of a packet without
// extension headers.
func l4(p []byte) (uint8, []byte) {
	switch ipVersion(p) {
	case 4:
		return p[9], p[int(p[0]&0xf)*4:]
	case 6:
		return p[6], p[40:]
	}
	return 0, nil
}

func withHeadroom(pkt []byte) []byte {
	// Spare capacity lets wireguard-go coalesce (GRO) packets into this one.
	b := make([]byte, off, off+65535)
	return append(b, pkt...)
}

func TestTUNPing(t *testing.T) {
	ns := enterNetns(t)
	tn := createTUN(t, ns, testConfig())
	r := startReader(t, tn.Device())

	for _, tc := range []struct {
		network      string
		local, peer  netip.Addr
		proto        uint8
		echo, answer byte
	}{
		{"ip4:icmp", meshV4.Addr(), netip.MustParseAddr("100.64.0.2"), ProtoICMP, 8, 0},
		{"ip6:ipv6-icmp", meshV6.Addr(), netip.MustParseAddr("fd5e:1:2::2"), ProtoICMPv6, 128, 129},
	} {
		requireInNetns(t, ns)
		c, err := net.ListenPacket(tc.network, tc.local.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		id := uint16(os.Getpid())
		req := []byte{tc.echo, 0, 0, 0, byte(id >> 8), byte(id), 0, 1}
		req = append(req, "x0t overlay ping"...)
		if tc.proto == ProtoICMP {
			binary.BigEndian.PutUint16(req[2:], TransportChecksum(netip.Addr{}, netip.Addr{}, ProtoICMP, req))
		} // the kernel fills in the ICMPv6 checksum
		if _, err := c.WriteTo(req, &net.IPAddr{IP: tc.peer.AsSlice()}); err != nil {
			t.Fatal(err)
		}

		// The echo request comes out of the TUN.
		got := r.await(t, "echo request to "+tc.peer.String(), func(p []byte) bool {
			proto, icmp := l4(p)
			d, _ := ParseDst(p)
			return proto == tc.proto && d == tc.peer && len(icmp) >= 8 && icmp[0] == tc.echo &&
				binary.BigEndian.Uint16(icmp[4:]) == id
		})
		if s, _ := ParseSrc(got); s != tc.local {
			t.Errorf("echo request from %v, want %v", s, tc.local)
		}

		// Answer it through the TUN; the kernel delivers the reply to the socket.
		_, icmp := l4(got)
		reply := bytes.Clone(icmp)
		reply[0], reply[2], reply[3] = tc.answer, 0, 0
		var pkt []byte
		if tc.proto == ProtoICMP {
			binary.BigEndian.PutUint16(reply[2:], TransportChecksum(netip.Addr{}, netip.Addr{}, ProtoICMP, reply))
			pkt = PacketIPv4(tc.peer, tc.local, ProtoICMP, reply)
		} else {
			binary.BigEndian.PutUint16(reply[2:], TransportChecksum(tc.peer, tc.local, ProtoICMPv6, reply))
			pkt = PacketIPv6(tc.peer, tc.local, ProtoICMPv6, reply)
		}
		if n, err := tn.Device().Write([][]byte{withHeadroom(pkt)}, off); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s: no echo reply: %v", tc.network, err)
			}
			if n >= 8 && buf[0] == tc.answer && binary.BigEndian.Uint16(buf[4:]) == id {
				if !bytes.Equal(buf[8:n], req[8:]) || from.String() != tc.peer.String() {
					t.Errorf("reply %q from %v", buf[8:n], from)
				}
				break
			}
		}
	}
}

func TestTUNWriteUDPBatch(t *testing.T) {
	ns := enterNetns(t)
	tn := createTUN(t, ns, testConfig())
	for _, tc := range []struct{ local, peer netip.Addr }{
		{meshV4.Addr(), netip.MustParseAddr("100.64.0.2")},
		{meshV6.Addr(), netip.MustParseAddr("fd5e:1:2::2")},
	} {
		requireInNetns(t, ns)
		laddr := netip.AddrPortFrom(tc.local, 7001)
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(laddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// One flow, equal sizes: wireguard-go coalesces these into one
		// super-packet where the kernel supports it; the socket must still
		// see 8 separate datagrams.
		const count = 8
		from := netip.AddrPortFrom(tc.peer, 5555)
		var bufs [][]byte
		for i := range count {
			payload := bytes.Repeat([]byte{byte('a' + i)}, 1000)
			bufs = append(bufs, withHeadroom(PacketUDP(from, laddr, payload)))
		}
		if n, err := tn.Device().Write(bufs, off); n != count || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2000)
		for i := range count {
			n, src, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				out, _ := exec.Command("sh", "-c", "nstat -az | grep -v ' 0 ' ; ip -6 addr; ip -6 route; ss -uan").CombinedOutput()
				t.Logf("%s", out)
				t.Fatalf("datagram %d: %v", i, err)
			}
			if src != from || n != 1000 || buf[0] != byte('a'+i) || buf[n-1] != byte('a'+i) {
				t.Fatalf("datagram %d: %d bytes %q.. from %v", i, n, buf[:1], src)
			}
		}
	}
}

// TestTUNReadUDPSegments sends one 10-datagram UDP GSO burst through the TUN.
// With USO the kernel hands over a single super-packet and wireguard-go splits
// it into a batch; without it the kernel segments first. Either way Read must
// yield 10 correct datagrams.
func TestTUNReadUDPSegments(t *testing.T) {
	ns := enterNetns(t)
	tn := createTUN(t, ns, testConfig())
	r := startReader(t, tn.Device())
	requireInNetns(t, ns)
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(meshV4.Addr(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := sc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, 1000)
	}); err != nil || serr != nil {
		t.Fatalf("UDP_SEGMENT: %v %v", err, serr)
	}
	data := make([]byte, 10*1000)
	rand.Read(data)
	dst := netip.AddrPortFrom(netip.MustParseAddr("100.64.0.2"), 9)
	if _, err := c.WriteToUDPAddrPort(data, dst); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for i := range 10 {
		p := r.await(t, fmt.Sprint("segment ", i), func(p []byte) bool {
			proto, _ := l4(p)
			d, _ := ParseDst(p)
			return proto == ProtoUDP && d == dst.Addr()
		})
		_, udp := l4(p)
		if len(udp) != 8+1000 {
			t.Fatalf("segment %d: UDP length %d", i, len(udp))
		}
		got = append(got, udp[8:]...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("segments do not reassemble to the data sent")
	}
	t.Logf("10 datagrams in %d Read calls, largest batch %d", r.reads.Load(), r.maxBatch.Load())
}

// TestTUNKernelTCPToNetstack runs TCP between the kernel (client, in the test
// namespace) and a netstack (server) glued to the TUN, over IPv4 and IPv6.
// Bulk data exercises wireguard-go's TSO split on Read and GRO on Write.
func TestTUNKernelTCPToNetstack(t *testing.T) {
	ns := enterNetns(t)
	cfg := testConfig()
	cfg.MTU = DefaultMTU
	tn := createTUN(t, ns, cfg)
	peer4, peer6 := netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("fd5e:1:2::2")
	st, err := NewNetstack([]netip.Addr{peer4, peer6}, DefaultMTU)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	var maxTUNBatch atomic.Int32
	var wg sync.WaitGroup
	defer wg.Wait()
	defer tn.Close() // before wg.Wait: stops the glue
	defer st.Close()
	copyPackets := func(src, dst Device, record bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs, sizes := newBufs(src.BatchSize(), 65535)
			out := make([][]byte, len(bufs))
			for {
				n, err := src.Read(bufs, sizes, off)
				if errors.Is(err, tun.ErrTooManySegments) {
					continue
				}
				if err != nil {
					return
				}
				if record && int32(n) > maxTUNBatch.Load() {
					maxTUNBatch.Store(int32(n))
				}
				for i := range n {
					out[i] = bufs[i][:off+sizes[i]]
				}
				if _, err := dst.Write(out[:n], off); err != nil && !errors.Is(err, os.ErrClosed) {
					t.Logf("glue %s -> %s: write %d packets: %v", name(src), name(dst), n, err)
				}
			}
		}()
	}
	copyPackets(tn.Device(), st.Device(), true)
	copyPackets(st.Device(), tn.Device(), false)

	for _, addr := range []netip.Addr{peer4, peer6} {
		ln, err := st.Net().ListenTCPAddrPort(netip.AddrPortFrom(addr, 7))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(c, c); c.Close() }()
			}
		}()
	}

	data := make([]byte, 4<<20)
	rand.Read(data)
	want := sha256.Sum256(data)
	for _, addr := range []netip.Addr{peer4, peer6} {
		requireInNetns(t, ns)
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", netip.AddrPortFrom(addr, 7).String())
		if err != nil {
			t.Fatalf("dial %v: %v", addr, err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		go func() {
			c.Write(data)
			c.(*net.TCPConn).CloseWrite()
		}()
		h := sha256.New()
		n, err := io.Copy(h, c)
		c.Close()
		if err != nil || n != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
			ss, _ := exec.Command("sh", "-c", "ss -tino; nstat -az | grep -v ' 0 '").CombinedOutput()
			t.Logf("netstack drops %d, queued %d; ss:\n%s", st.Dropped(), st.out.len(), ss)
			t.Fatalf("echo via %v: %d of %d bytes, %v, checksum ok %v", addr, n, len(data), err, bytes.Equal(h.Sum(nil), want[:]))
		}
	}
	t.Logf("largest TUN Read batch %d (BatchSize %d), netstack drops %d", maxTUNBatch.Load(), tn.Device().BatchSize(), st.Dropped())
	if tn.Device().BatchSize() > 1 && maxTUNBatch.Load() < 2 {
		t.Error("TUN has offloads on but never returned more than one packet per Read: TSO split not exercised")
	}
}

func TestCreateTUNErrors(t *testing.T) {
	ns := enterNetns(t)
	h := nlHandle(t, ns)
	linkCount := func() int {
		links, err := h.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		return len(links)
	}
	before := linkCount()

	for name, cfg := range map[string]TUNConfig{
		"long name":       {Name: "x0t-name-too-long"},
		"slash in name":   {Name: "x0t/0"},
		"v6 with low MTU": {Name: testTUN, MTU: 1000, Addrs: []netip.Prefix{meshV6}},
		"huge MTU":        {Name: testTUN, MTU: 70000},
		"invalid addr":    {Name: testTUN, Addrs: []netip.Prefix{{}}},
		"duplicate route": {Name: testTUN, Routes: []netip.Prefix{extraV4, extraV4}},
		"duplicate addr":  {Name: testTUN, Addrs: []netip.Prefix{meshV4, meshV4}},
	} {
		requireInNetns(t, ns)
		if tn, err := CreateTUN(cfg); err == nil {
			tn.Close()
			t.Errorf("%s: CreateTUN succeeded", name)
		} else if !strings.HasPrefix(err.Error(), "overlay: create TUN") {
			t.Errorf("%s: error lacks context: %v", name, err)
		}
	}
	if n := linkCount(); n != before {
		t.Errorf("failed CreateTUN calls left %d links behind", n-before)
	}

	// A name in use, by our TUN or by another kind of link.
	createTUN(t, ns, testConfig())
	if _, err := CreateTUN(testConfig()); !errors.Is(err, ErrNameInUse) {
		t.Errorf("second TUN with the same name: %v, want ErrNameInUse", err)
	}
	if _, err := CreateTUN(TUNConfig{Name: "lo"}); !errors.Is(err, ErrNameInUse) {
		t.Errorf("TUN named lo: %v, want ErrNameInUse", err)
	}
	// A persistent TUN nobody holds open: wireguard-go would attach to it.
	requireInNetns(t, ns)
	pers := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "x0t-pers0"}, Mode: netlink.TUNTAP_MODE_TUN}
	if err := h.LinkAdd(pers); err != nil {
		t.Fatal(err)
	}
	defer h.LinkDel(pers)
	if _, err := CreateTUN(TUNConfig{Name: "x0t-pers0"}); !errors.Is(err, ErrNameInUse) {
		t.Errorf("TUN named like a persistent TUN: %v, want ErrNameInUse", err)
	}

	// No TUN clone device.
	saved := tunCloneDevice
	tunCloneDevice = "/nonexistent/net/tun"
	_, err := CreateTUN(TUNConfig{Name: "x0t-test1"})
	tunCloneDevice = saved
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/nonexistent/net/tun") {
		t.Errorf("missing clone device: %v, want a wrapped fs.ErrNotExist", err)
	}
}

// TestTUNEventsDrained checks that a consumer that ignores Events neither
// blocks the device nor leaks wireguard-go's listener goroutines on Close.
func TestTUNEventsDrained(t *testing.T) {
	ns := enterNetns(t)
	h := nlHandle(t, ns)
	before := runtime.NumGoroutine()
	tn := createTUN(t, ns, testConfig())
	link, err := h.LinkByName(testTUN)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 { // each change makes upstream emit events
		if err := h.LinkSetMTU(link, 1300+i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { mtu, _ := tn.Device().MTU(); return mtu == 1319 })
	if err := tn.Close(); err != nil {
		t.Fatal(err)
	}
	for range tn.Device().Events() { // closed by Close
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

// TestCreateTUNUnprivileged runs in the non-root pass: without CAP_NET_ADMIN
// CreateTUN must fail cleanly, before touching anything.
func TestCreateTUNUnprivileged(t *testing.T) {
	if os.Geteuid() == 0 && hasNetAdmin() {
		t.Skip("runs without CAP_NET_ADMIN only")
	}
	_, err := CreateTUN(TUNConfig{Name: "x0t-nopriv0"})
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("CreateTUN without CAP_NET_ADMIN: %v, want os.ErrPermission", err)
	}
}

// TestTUNWaitReadable: the low-latency mode's poll of the TUN gives up at its
// deadline when nothing comes, sees a packet the kernel routes into the
// device, and reports false once the TUN is closing.
func TestTUNWaitReadable(t *testing.T) {
	ns := enterNetns(t)
	tn, err := CreateTUN(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	dev := tn.Device().(interface{ WaitReadable(time.Time) bool })
	// The kernel may still send router solicitations or MLD reports for the
	// new link: read those away first.
	for dev.WaitReadable(time.Now().Add(300 * time.Millisecond)) {
		bufs, sizes := [][]byte{make([]byte, off+65535)}, []int{0}
		if _, err := tn.Device().Read(bufs, sizes, off); err != nil {
			t.Fatal(err)
		}
	}
	requireInNetns(t, ns)
	c, err := net.ListenPacket("udp4", meshV4.Addr().String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer := &net.UDPAddr{IP: net.IPv4(100, 64, 0, 2), Port: 9}
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.WriteTo([]byte("x0t busy poll"), peer)
	}()
	if !dev.WaitReadable(time.Now().Add(10 * time.Second)) {
		t.Fatal("WaitReadable missed a packet routed into the TUN")
	}
	bufs, sizes := [][]byte{make([]byte, off+65535)}, []int{0}
	if n, err := tn.Device().Read(bufs, sizes, off); n != 1 || err != nil {
		t.Fatalf("Read after WaitReadable = %d, %v", n, err)
	}
	if d, _ := ParseDst(bufs[0][off : off+sizes[0]]); d != netip.MustParseAddr("100.64.0.2") {
		t.Errorf("read a packet for %v", d)
	}

	if err := tn.Close(); err != nil {
		t.Fatal(err)
	}
	if dev.WaitReadable(time.Now().Add(10 * time.Second)) {
		t.Error("WaitReadable on a closed TUN reported a packet")
	}
}
