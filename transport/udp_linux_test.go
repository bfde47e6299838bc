package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/x0tta6bl4/x0t/internal/testutil"
)

// listen opens a UDPConn closed at the end of the test.
func listen(t testing.TB, addr string) *UDPConn {
	t.Helper()
	c, err := ListenUDP(netip.MustParseAddrPort(addr))
	if err != nil {
		if strings.Contains(addr, "[") && errors.Is(err, syscall.EADDRNOTAVAIL) {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// payload fills b with a pattern that identifies datagram seq.
func payload(b []byte, seq int) []byte {
	for i := range b {
		b[i] = byte(seq*7 + i)
	}
	if len(b) >= 4 {
		binary.BigEndian.PutUint32(b, uint32(seq))
	}
	return b
}

// outMsgs returns messages to dst with the given sizes, numbered from seq0.
func outMsgs(dst netip.AddrPort, seq0 int, sizes ...int) []Message {
	ms := make([]Message, len(sizes))
	for i, n := range sizes {
		ms[i] = Message{Buf: payload(make([]byte, n), seq0+i), N: n, Addr: dst}
	}
	return ms
}

// inMsgs returns n messages for ReadBatch; the first nbig get MaxSegmentBuf bytes.
func inMsgs(n, nbig, size int) []Message {
	ms := make([]Message, n)
	for i := range ms {
		sz := size
		if i < nbig {
			sz = MaxSegmentBuf
		}
		ms[i].Buf = make([]byte, sz)
	}
	return ms
}

type datagram struct {
	from netip.AddrPort
	data []byte
}

// recvN reads until want datagrams arrived, failing after a timeout.
func recvN(t testing.TB, c Conn, ms []Message, want int) []datagram {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { c.Close() })
	defer timer.Stop()
	var got []datagram
	for len(got) < want {
		n, err := c.ReadBatch(ms)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), want, err)
		}
		for _, m := range ms[:n] {
			got = append(got, datagram{m.Addr, bytes.Clone(m.Buf[:m.N])})
		}
	}
	if len(got) > want {
		t.Fatalf("got %d datagrams, want %d", len(got), want)
	}
	return got
}

// check compares received datagrams with what was sent, in order.
func check(t testing.TB, got []datagram, from netip.AddrPort, sent []Message) {
	t.Helper()
	if len(got) != len(sent) {
		t.Fatalf("got %d datagrams, want %d", len(got), len(sent))
	}
	for i, d := range got {
		if d.from != from {
			t.Errorf("datagram %d from %v, want %v", i, d.from, from)
		}
		if want := sent[i].Buf[:sent[i].N]; !bytes.Equal(d.data, want) {
			t.Fatalf("datagram %d: got %d bytes %x..., want %d bytes %x...",
				i, len(d.data), d.data[:min(8, len(d.data))], len(want), want[:min(8, len(want))])
		}
	}
}

// turnGROOn has b read a datagram from a with big buffers, which switches
// UDP_GRO on for b; datagrams queued before that are not coalesced.
func turnGROOn(t testing.TB, a Conn, b *UDPConn) {
	t.Helper()
	if err := a.WriteBatch(outMsgs(b.LocalAddr(), -1, 10)); err != nil {
		t.Fatal(err)
	}
	recvN(t, b, inMsgs(1, 1, 0), 1)
	if _, groCap, groOn := b.offload(); groCap && !groOn {
		t.Fatal("GRO not switched on by a big-buffer read")
	}
	b.stats.recvMsgs.Store(0)
	b.stats.recvCalls.Store(0)
}

func sizes(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

func TestListenFamilies(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		family int
		v6only bool
	}{
		{"127.0.0.1:0", unix.AF_INET, false},
		{"0.0.0.0:0", unix.AF_INET, false},
		{"[::ffff:127.0.0.1]:0", unix.AF_INET, false},
		{"[::1]:0", unix.AF_INET6, true},
		{"[::]:0", unix.AF_INET6, false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			c := listen(t, tc.addr)
			if c.family != tc.family || c.v6only != tc.v6only {
				t.Errorf("family %d v6only %v, want %d %v", c.family, c.v6only, tc.family, tc.v6only)
			}
			want := netip.MustParseAddrPort(tc.addr)
			got := c.LocalAddr()
			if got.Addr() != want.Addr().Unmap() || got.Port() == 0 {
				t.Errorf("LocalAddr %v for %v", got, want)
			}
		})
	}
	if _, err := ListenUDP(netip.AddrPort{}); err == nil {
		t.Error("ListenUDP of the zero AddrPort succeeded")
	}
}

func TestRoundTrip(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		for _, big := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/bigbuf=%v", addr, big), func(t *testing.T) {
				a, b := listen(t, addr), listen(t, addr)
				var sz []int
				for i := range 200 {
					sz = append(sz, 1+(i*379)%1500) // all different, so nothing coalesces
				}
				sent := outMsgs(b.LocalAddr(), 0, sz...)
				if err := a.WriteBatch(sent); err != nil {
					t.Fatal(err)
				}
				nbig := 0
				if big {
					nbig = 2
				}
				got := recvN(t, b, inMsgs(IdealBatchSize, nbig, 2048), len(sent))
				check(t, got, a.LocalAddr(), sent)
				if a.stats.sendCalls.Load() > 2 {
					t.Errorf("%d sendmmsg calls for 200 messages", a.stats.sendCalls.Load())
				}
			})
		}
	}
}

// TestGSO sends 64 equal messages and a shorter tail in one WriteBatch and
// checks that they left as few kernel messages and arrive as 65 datagrams.
func TestGSO(t *testing.T) {
	for _, tc := range []struct {
		name    string
		addr    string
		nbig    int // receiver's big buffers: 0 keeps GRO off
		n, size int // receiver's messages
	}{
		{"v4/gro-off", "127.0.0.1:0", 0, IdealBatchSize, 1500},
		{"v4/gro-on", "127.0.0.1:0", 2, IdealBatchSize, 1500},
		{"v6/gro-off", "[::1]:0", 0, IdealBatchSize, 1500},
		{"v6/gro-on", "[::1]:0", 2, IdealBatchSize, 1500},
		{"v4/gro-on/few-msgs", "127.0.0.1:0", 1, 5, 1500}, // most datagrams wait in the conn
		{"v4/gro-on/single", "127.0.0.1:0", 1, 1, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := listen(t, tc.addr), listen(t, tc.addr)
			if gso, _, _ := a.offload(); !gso {
				t.Skip("kernel without UDP_SEGMENT")
			}
			if tc.nbig > 0 {
				turnGROOn(t, a, b)
			}
			a.stats.sendMsgs.Store(0)
			sent := outMsgs(b.LocalAddr(), 0, append(sizes(64, 1200), 500)...)
			if err := a.WriteBatch(sent); err != nil {
				t.Fatal(err)
			}
			// 64*1200 bytes exceed one kernel message: 54 segments fit, then 10 and the tail.
			if got := a.stats.sendMsgs.Load(); got != 2 {
				t.Errorf("65 datagrams left as %d kernel messages, want 2", got)
			}
			got := recvN(t, b, inMsgs(tc.n, tc.nbig, tc.size), len(sent))
			check(t, got, a.LocalAddr(), sent)
			_, groCap, groOn := b.offload()
			if tc.nbig > 0 && groCap {
				if !groOn {
					t.Error("GRO not switched on by a big-buffer read")
				}
				// On loopback a GSO send stays one buffer up to a GRO socket.
				if b.stats.recvGROMsgs.Load() == 0 {
					t.Errorf("no coalesced read: %d kernel messages", b.stats.recvMsgs.Load())
				}
			}
			if tc.nbig == 0 && (groOn || b.stats.recvGROMsgs.Load() != 0) {
				t.Error("GRO used although no read had a big buffer")
			}
		})
	}
}

// TestGROSplit has an independent sender (a plain socket with a hand-made
// UDP_SEGMENT cmsg) and checks the split on receive, also when GRO is on and
// later reads give small buffers.
func TestGROSplit(t *testing.T) {
	b := listen(t, "127.0.0.1:0")
	if _, groCap, _ := b.offload(); !groCap {
		t.Skip("kernel without UDP_GRO")
	}
	s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	from := s.LocalAddr().(*net.UDPAddr).AddrPort()

	send := func(seq0, n, seg int) []Message {
		ms := outMsgs(b.LocalAddr(), seq0, sizes(n, seg)...)
		ms[n-1].N = seg / 3 // a shorter tail
		var buf []byte
		for _, m := range ms {
			buf = append(buf, m.Buf[:m.N]...)
		}
		oob := make([]byte, unix.CmsgSpace(2))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
		binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(seg))
		if _, _, err := s.WriteMsgUDPAddrPort(buf, oob, b.LocalAddr()); err != nil {
			if n > maxGSOSegments && errors.Is(err, syscall.EINVAL) {
				return nil // an older kernel: at most 64 segments
			}
			t.Fatal(err)
		}
		return ms
	}

	// Big buffers: GRO goes on; 40 datagrams of 1000 bytes in one read.
	turnGROOn(t, b, b)
	sent := send(0, 40, 1000)
	got := recvN(t, b, inMsgs(IdealBatchSize, 2, 1500), len(sent))
	check(t, got, from, sent)
	if b.stats.recvMsgs.Load() != 1 || b.stats.recvGROMsgs.Load() != 1 {
		t.Errorf("%d kernel messages, %d coalesced; want 1, 1", b.stats.recvMsgs.Load(), b.stats.recvGROMsgs.Load())
	}
	// GRO is on, now small buffers: the conn reads through its own buffer.
	sent = send(100, 64, 500)
	got = recvN(t, b, inMsgs(10, 0, 600), len(sent))
	check(t, got, from, sent)
	// Two coalesced messages, then a plain one, read with big buffers at once.
	sent = append(send(200, 30, 1400), send(300, 20, 100)...)
	if _, err := s.WriteToUDPAddrPort(payload(make([]byte, 77), 400), b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	sent = append(sent, outMsgs(b.LocalAddr(), 400, 77)...)
	got = recvN(t, b, inMsgs(IdealBatchSize, IdealBatchSize, 0), len(sent))
	check(t, got, from, sent)
	// More segments than GRO makes, from a local GSO sender, with 128
	// big buffers (so two kernel messages are read at once).
	if sent = append(send(500, 120, 100), send(700, 120, 100)...); len(sent) > 0 {
		got = recvN(t, b, inMsgs(IdealBatchSize, IdealBatchSize, 0), len(sent))
		check(t, got, from, sent)
	} else {
		t.Log("kernel takes at most 64 segments per GSO send")
	}
}

func TestMixedBatch(t *testing.T) {
	a := listen(t, "[::]:0")
	b := listen(t, "127.0.0.1:0")
	c := listen(t, "[::1]:0")
	// Addresses as another package would see them: b in plain IPv4 form, also
	// once in IPv4-mapped form, which must reach the same socket.
	bm := netip.AddrPortFrom(netip.AddrFrom16(b.LocalAddr().Addr().As16()), b.LocalAddr().Port())
	var sent []Message
	var toB, toC []Message
	add := func(dst netip.AddrPort, ms []Message) {
		sent = append(sent, ms...)
		if dst.Addr().Unmap() == b.LocalAddr().Addr() {
			toB = append(toB, ms...)
		} else {
			toC = append(toC, ms...)
		}
	}
	seq := 0
	for _, step := range []struct {
		dst   netip.AddrPort
		sizes []int
	}{
		{b.LocalAddr(), sizes(3, 1000)},
		{c.LocalAddr(), sizes(2, 1000)},
		{b.LocalAddr(), []int{300}},
		{b.LocalAddr(), append(sizes(4, 1400), 1400, 700, 1400)}, // a run, a tail, a new run
		{bm, sizes(2, 1400)},
		{c.LocalAddr(), []int{20, 0, 20}}, // an empty datagram in the middle
		{b.LocalAddr(), sizes(70, 900)},   // longer than one GSO run
		{c.LocalAddr(), []int{1}},
	} {
		add(step.dst, outMsgs(step.dst, seq, step.sizes...))
		seq += len(step.sizes)
	}
	if err := a.WriteBatch(sent); err != nil {
		t.Fatal(err)
	}
	from4 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a.LocalAddr().Port())
	from6 := netip.AddrPortFrom(netip.MustParseAddr("::1"), a.LocalAddr().Port())
	check(t, recvN(t, b, inMsgs(IdealBatchSize, 2, 2048), len(toB)), from4, toB)
	check(t, recvN(t, c, inMsgs(IdealBatchSize, 0, 2048), len(toC)), from6, toC)
	t.Logf("%d messages left as %d kernel messages (%d with GSO) in %d sendmmsg calls",
		len(sent), a.stats.sendMsgs.Load(), a.stats.sendGSOMsgs.Load(), a.stats.sendCalls.Load())
}

func TestDualStack(t *testing.T) {
	srv := listen(t, "[::]:0")
	if srv.v6only {
		t.Skip("host without dual-stack sockets")
	}
	cli := listen(t, "127.0.0.1:0")
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), srv.LocalAddr().Port())
	if err := cli.WriteBatch(outMsgs(dst, 0, 100)); err != nil {
		t.Fatal(err)
	}
	got := recvN(t, srv, inMsgs(4, 0, 2048), 1)
	if from := got[0].from; from != cli.LocalAddr() || !from.Addr().Is4() {
		t.Fatalf("dual-stack read reports %v, want plain %v", from, cli.LocalAddr())
	}
	// Reply to the address as reported; and once IPv4-mapped.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(got[0].from.Addr().As16()), got[0].from.Port())
	reply := append(outMsgs(got[0].from, 1, 200), outMsgs(mapped, 2, 300)...)
	if err := srv.WriteBatch(reply); err != nil {
		t.Fatal(err)
	}
	check(t, recvN(t, cli, inMsgs(4, 0, 2048), 2), dst, reply)
}

func TestWriteBatchErrors(t *testing.T) {
	a, b := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:4242")
	ms := []Message{
		outMsgs(b.LocalAddr(), 0, 100)[0],
		outMsgs(b.LocalAddr(), 1, 100)[0],
		outMsgs(v6, 99, 100)[0],              // IPv6 on an IPv4 socket
		outMsgs(b.LocalAddr(), 2, 100)[0],    // same size as the first two, after a failure
		{Buf: make([]byte, 10), N: 11},       // N beyond Buf
		outMsgs(netip.AddrPort{}, 98, 10)[0], // no address
		outMsgs(b.LocalAddr(), 3, 50)[0],
	}
	err := a.WriteBatch(ms)
	if !errors.Is(err, syscall.EAFNOSUPPORT) {
		t.Fatalf("WriteBatch error %v, want the first one, EAFNOSUPPORT", err)
	}
	want := []Message{ms[0], ms[1], ms[3], ms[6]}
	check(t, recvN(t, b, inMsgs(8, 0, 2048), len(want)), a.LocalAddr(), want)
}

func TestClose(t *testing.T) {
	for _, big := range []bool{false, true} {
		t.Run(fmt.Sprintf("bigbuf=%v", big), func(t *testing.T) {
			c := listen(t, "127.0.0.1:0")
			nbig := 0
			if big {
				nbig = 1
			}
			ms := inMsgs(8, nbig, 2048)
			errc := make(chan error, 2)
			for i := range 2 { // the second one waits for the read lock
				go func(ms []Message) {
					_, err := c.ReadBatch(ms)
					errc <- err
				}(ms[i*4 : i*4+4])
			}
			time.Sleep(50 * time.Millisecond) // let them block; the result is the same if not
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				select {
				case err := <-errc:
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("ReadBatch after Close: %v, want net.ErrClosed", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("Close did not unblock ReadBatch")
				}
			}
			if _, err := c.ReadBatch(inMsgs(1, 0, 10)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadBatch on closed conn: %v", err)
			}
			if err := c.WriteBatch(outMsgs(c.LocalAddr(), 0, 10)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("WriteBatch on closed conn: %v", err)
			}
			if err := c.Close(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestSockaddr(t *testing.T) {
	var zones zoneCache
	for _, tc := range []struct {
		ap     string
		family int
		v6only bool
		want   string // "" = same as ap; "err" = error
	}{
		{"192.0.2.1:4242", unix.AF_INET, false, ""},
		{"[::ffff:192.0.2.1]:4242", unix.AF_INET, false, "192.0.2.1:4242"},
		{"[2001:db8::1]:1", unix.AF_INET, false, "err"},
		{"192.0.2.1:4242", unix.AF_INET6, false, ""},
		{"[::ffff:192.0.2.1]:4242", unix.AF_INET6, false, "192.0.2.1:4242"},
		{"192.0.2.1:4242", unix.AF_INET6, true, "err"},
		{"[2001:db8::1]:65535", unix.AF_INET6, true, ""},
		{"[fe80::1%1]:7", unix.AF_INET6, true, "[fe80::1%lo]:7"},
		{"[fe80::1%lo]:7", unix.AF_INET6, true, ""},
		{"[fe80::1%no-such-if0]:7", unix.AF_INET6, true, "err"},
	} {
		var sa unix.RawSockaddrInet6
		n, err := putSockaddr(&sa, netip.MustParseAddrPort(tc.ap), tc.family, tc.v6only, &zones)
		if tc.want == "err" {
			if err == nil {
				t.Errorf("%s on family %d v6only %v: no error", tc.ap, tc.family, tc.v6only)
			}
			continue
		}
		want := tc.want
		if want == "" {
			want = tc.ap
		}
		if err != nil {
			t.Errorf("%s: %v", tc.ap, err)
			continue
		}
		if (tc.family == unix.AF_INET) != (n == sizeofSockaddr4) {
			t.Errorf("%s: sockaddr length %d", tc.ap, n)
		}
		if got := getSockaddr(&sa, &zones); got.String() != want {
			t.Errorf("%s: decoded %v, want %v", tc.ap, got, want)
		}
	}
	sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Scope_id: 1}
	allocs := testing.AllocsPerRun(100, func() {
		ap := getSockaddr(&sa, &zones)
		putSockaddr(&sa, ap, unix.AF_INET6, false, &zones)
	})
	if allocs != 0 {
		t.Errorf("sockaddr conversion of a zoned address: %v allocations", allocs)
	}
}

// TestAllocs checks that a steady-state round trip does not allocate.
func TestAllocs(t *testing.T) {
	for _, mode := range []string{"small", "big", "views"} {
		t.Run(mode, func(t *testing.T) {
			a, b := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
			out := outMsgs(b.LocalAddr(), 0, sizes(64, 1400)...)
			nbig := 0
			if mode == "big" {
				nbig = 2
			}
			in := inMsgs(IdealBatchSize, nbig, 2048)
			var failed error
			roundTrip := func() {
				if err := a.WriteBatch(out); err != nil {
					failed = err
					return
				}
				for got := 0; got < len(out); {
					if mode == "views" {
						in[0].Buf = nil
					}
					n, err := b.ReadBatch(in)
					if err != nil {
						failed = err
						return
					}
					got += n
				}
			}
			roundTrip()
			allocs := testing.AllocsPerRun(200, roundTrip)
			if failed != nil {
				t.Fatal(failed)
			}
			if allocs != 0 {
				t.Errorf("%v allocations per round trip of 64 datagrams", allocs)
			}
		})
	}
}

// inNetns runs setup on a thread moved to a new network namespace, so that
// sockets it opens live there; the thread ends with it and the namespace with
// the last socket.
func inNetns(t *testing.T, cmds []string, setup func() error) {
	t.Helper()
	testutil.RequireRoot(t)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		for _, cmd := range cmds {
			if out, err := exec.Command("ip", strings.Fields(cmd)...).CombinedOutput(); err != nil {
				errc <- fmt.Errorf("ip %s: %v: %s", cmd, err, out)
				return
			}
		}
		errc <- setup()
	}()
	if err := <-errc; err != nil {
		t.Skipf("network namespace: %v", err)
	}
}

// TestGSOOverMTU: segments larger than the path MTU make the kernel refuse
// GSO (EINVAL); the batch must go out without it, fragmented, and arrive.
func TestGSOOverMTU(t *testing.T) {
	var a, b *UDPConn
	inNetns(t, []string{"link set lo up", "link set lo mtu 1280"}, func() (err error) {
		if a, err = ListenUDP(netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
			return err
		}
		b, err = ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
		return err
	})
	defer a.Close()
	defer b.Close()
	if gso, _, _ := a.offload(); !gso {
		t.Skip("kernel without UDP_SEGMENT")
	}
	sent := outMsgs(b.LocalAddr(), 0, append(sizes(10, 1400), 500, 1000, 1000)...)
	if err := a.WriteBatch(sent); err != nil {
		t.Fatal(err)
	}
	check(t, recvN(t, b, inMsgs(IdealBatchSize, 2, 2048), len(sent)), a.LocalAddr(), sent)
	if gso, _, _ := a.offload(); !gso {
		t.Error("GSO switched off for good by a per-destination MTU problem")
	}
	if a.stats.sendGSOMsgs.Load() != 1 { // the 1000-byte pair still goes with GSO
		t.Errorf("%d GSO messages sent, want 1", a.stats.sendGSOMsgs.Load())
	}
}

// TestGSOWithoutChecksumOffload: older kernels answer a GSO send with EIO
// when the egress device has no checksum offload (a TUN device, say); newer
// ones (6.18 here) checksum in software instead. So the EIO is injected: the
// conn must switch GSO off and send the batch without it.
func TestGSOWithoutChecksumOffload(t *testing.T) {
	a, b := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	if gso, _, _ := a.offload(); !gso {
		t.Skip("kernel without UDP_SEGMENT")
	}
	w := newWriteState()
	real := w.fn
	w.fn = func(fd uintptr) bool { // EIO at the first GSO message, as the kernel would
		for i := w.start; i < w.end; i++ {
			if w.count[i] > 1 {
				if i == w.start {
					w.n, w.errno = 0, unix.EIO
					return true
				}
				end := w.end
				w.end = i
				defer func() { w.end = end }()
				return real(fd)
			}
		}
		return real(fd)
	}
	a.writeFree = append(a.writeFree, w)
	sent := outMsgs(b.LocalAddr(), 0, append([]int{100}, sizes(10, 1200)...)...)
	if err := a.WriteBatch(sent); err != nil {
		t.Fatal(err)
	}
	check(t, recvN(t, b, inMsgs(IdealBatchSize, 0, 2048), len(sent)), a.LocalAddr(), sent)
	if gso, _, _ := a.offload(); gso {
		t.Error("GSO still on after EIO")
	}
	if got := a.stats.sendMsgs.Load(); got != 11 {
		t.Errorf("%d kernel messages sent, want 11 without GSO", got)
	}
}

// recvViews is recvN in view mode: it checks that every datagram is a view
// of exactly its bytes, and returns them with, per read, whether the views of
// consecutive full-size datagrams were adjacent (not copied apart).
func recvViews(t testing.TB, c Conn, ms []Message, want int) (got []datagram, adjacent bool) {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { c.Close() })
	defer timer.Stop()
	adjacent = true
	for len(got) < want {
		ms[0].Buf = nil
		n, err := c.ReadBatch(ms)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), want, err)
		}
		for i, m := range ms[:n] {
			if len(m.Buf) != m.N || cap(m.Buf) != m.N {
				t.Fatalf("datagram %d: view of len %d cap %d, want both %d", len(got), len(m.Buf), cap(m.Buf), m.N)
			}
			if i > 0 && ms[i-1].N == m.N && m.N > 0 &&
				unsafe.Pointer(&m.Buf[0]) != unsafe.Add(unsafe.Pointer(&ms[i-1].Buf[0]), m.N) {
				adjacent = false
			}
			got = append(got, datagram{m.Addr, bytes.Clone(m.Buf)})
		}
	}
	if len(got) > want {
		t.Fatalf("got %d datagrams, want %d", len(got), want)
	}
	return got, adjacent
}

// TestViews: in view mode a split GRO read hands out the datagrams where the
// kernel put them, a view can be sent on as it is (what a relay does), and
// datagrams that do not fit, or a conn without GRO, still come out whole.
func TestViews(t *testing.T) {
	a, b, c := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	if _, groCap, _ := b.offload(); !groCap {
		t.Skip("kernel without UDP_GRO")
	}
	turnGROOn(t, a, b)
	ms := make([]Message, IdealBatchSize)

	sent := outMsgs(b.LocalAddr(), 0, sizes(40, 1000)...)
	if err := a.WriteBatch(sent); err != nil {
		t.Fatal(err)
	}
	before := b.stats.recvGROMsgs.Load()
	got, adjacent := recvViews(t, b, ms, len(sent))
	check(t, got, a.LocalAddr(), sent)
	if b.stats.recvGROMsgs.Load() == before {
		t.Skip("the kernel did not coalesce the batch")
	}
	if !adjacent {
		t.Error("the datagrams of a coalesced read were copied apart")
	}

	// Relay: read views, change a byte in place, send them on.
	if err := a.WriteBatch(sent); err != nil {
		t.Fatal(err)
	}
	ms[0].Buf = nil
	n, err := b.ReadBatch(ms)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]Message, n)
	for i := range n {
		ms[i].Buf[5] ^= 0xff
		ms[i].Addr = c.LocalAddr()
		want[i] = Message{Buf: bytes.Clone(ms[i].Buf), N: ms[i].N}
	}
	if err := b.WriteBatch(ms[:n]); err != nil {
		t.Fatal(err)
	}
	check(t, recvN(t, c, inMsgs(IdealBatchSize, 2, 0), n), b.LocalAddr(), want)
	if n < len(sent) { // the rest of the batch, if it came in a second read
		got, _ = recvViews(t, b, ms, len(sent)-n)
		check(t, got, a.LocalAddr(), sent[n:])
	}

	// Fewer messages than datagrams in a coalesced read: the rest wait in
	// the conn and come as views of its spill buffer.
	sent = outMsgs(b.LocalAddr(), 100, sizes(60, 500)...)
	if err := a.WriteBatch(sent); err != nil {
		t.Fatal(err)
	}
	got, _ = recvViews(t, b, ms[:7], len(sent))
	check(t, got, a.LocalAddr(), sent)

	// Without GRO each datagram is read into a buffer of the conn's.
	d := listen(t, "127.0.0.1:0")
	d.groCap.Store(false)
	sent = outMsgs(d.LocalAddr(), 200, 1, 1400, 0, 700, 65000)
	if err := a.WriteBatch(sent); err != nil {
		t.Fatal(err)
	}
	got, _ = recvViews(t, d, ms, len(sent))
	check(t, got, a.LocalAddr(), sent)
	if _, _, groOn := d.offload(); groOn {
		t.Error("GRO switched on although the kernel was said to lack it")
	}
}

// TestNonBlocking checks what the raw recvmmsg and sendmmsg calls rely on: the
// socket is non-blocking, so that the Go poller waits for it, and a call on an
// empty socket returns EAGAIN at once instead of sleeping in a raw syscall.
func TestNonBlocking(t *testing.T) {
	c := listen(t, "127.0.0.1:0")
	var flags int
	var ferr error
	if err := c.rc.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil || ferr != nil {
		t.Fatal(err, ferr)
	}
	if flags&unix.O_NONBLOCK == 0 {
		t.Fatalf("socket flags %#x: not O_NONBLOCK", flags)
	}
	s := newReadState(c)
	s.nhs = 1
	var ready bool
	if err := c.rc.Control(func(fd uintptr) { ready = s.recvmmsg(fd) }); err != nil {
		t.Fatal(err)
	}
	if ready {
		t.Fatalf("recvmmsg on an empty socket: n=%d errno=%v, want EAGAIN", s.n, s.errno)
	}
}

// TestGSOWhole checks that a full GSO send reaches a GRO socket as one buffer
// for segment sizes whose runs end just under the payload limit: a device
// takes a GSO packet whole only if it is shorter than its gso_max_size (64
// KiB) with the link-layer header counted, else the kernel splits it in
// software, which costs the receiver a read and a decryption call per datagram.
func TestGSOWhole(t *testing.T) {
	for _, tc := range []struct {
		addr string
		seg  int
	}{
		{"127.0.0.1:0", 1200}, {"127.0.0.1:0", 1424}, {"127.0.0.1:0", 1472}, {"127.0.0.1:0", 1500},
		{"[::1]:0", 1200}, {"[::1]:0", 1424}, {"[::1]:0", 1452}, {"[::1]:0", 1500},
	} {
		seg := tc.seg
		t.Run(fmt.Sprint(tc.addr, "/", seg), func(t *testing.T) {
			a, b := listen(t, tc.addr), listen(t, tc.addr)
			if gso, _, _ := a.offload(); !gso {
				t.Skip("kernel without UDP_SEGMENT")
			}
			turnGROOn(t, a, b)
			a.stats.sendMsgs.Store(0)
			b.stats.recvMsgs.Store(0)
			sent := outMsgs(b.LocalAddr(), 0, sizes(2*maxGSOSegments, seg)...)
			if err := a.WriteBatch(sent); err != nil {
				t.Fatal(err)
			}
			got := recvN(t, b, inMsgs(IdealBatchSize, IdealBatchSize, MaxSegmentBuf), len(sent))
			check(t, got, a.LocalAddr(), sent)
			if s, r := a.stats.sendMsgs.Load(), b.stats.recvMsgs.Load(); r != s {
				t.Errorf("%d datagrams of %d bytes left as %d kernel messages and arrived as %d", len(sent), seg, s, r)
			}
		})
	}
}

// TestWaitReadable: the low-latency mode's poll sees a datagram arrive, sees
// datagrams the conn has stashed from a GRO read though the socket is
// empty, gives up at its deadline, and reports false once the conn is closed.
func TestWaitReadable(t *testing.T) {
	a, b := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	if b.WaitReadable(time.Now().Add(20 * time.Millisecond)) {
		t.Fatal("WaitReadable on an empty socket reported a datagram")
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		a.WriteBatch(outMsgs(b.LocalAddr(), 0, 100))
	}()
	if !b.WaitReadable(time.Now().Add(10 * time.Second)) {
		t.Fatal("WaitReadable missed a datagram")
	}
	recvN(t, b, inMsgs(1, 0, 200), 1)

	if _, groCap, _ := b.offload(); groCap {
		turnGROOn(t, a, b)
		sent := outMsgs(b.LocalAddr(), 0, sizes(40, 500)...)
		if err := a.WriteBatch(sent); err != nil {
			t.Fatal(err)
		}
		// Small buffers: the rest of the coalesced read waits in the conn.
		if !b.WaitReadable(time.Now().Add(10 * time.Second)) {
			t.Fatal("WaitReadable missed a GRO batch")
		}
		recvN(t, b, inMsgs(10, 0, 600), 10)
		if b.rd.pendHead == len(b.rd.pend) {
			t.Skip("the kernel did not coalesce the batch: nothing stashed")
		}
		if !b.WaitReadable(time.Now()) {
			t.Error("WaitReadable does not count stashed datagrams")
		}
		recvN(t, b, inMsgs(40, 0, 600), 30)
	}

	b.Close()
	if b.WaitReadable(time.Now().Add(10 * time.Second)) {
		t.Error("WaitReadable on a closed conn reported a datagram")
	}
}
