package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/x0tta6bl4/x0t/internal/busypoll"
)

const (
	// socketBufferSize is the send and receive buffer asked for: enough for
	// several full batches in flight. Above net.core.[rw]mem_max it is forced
	// with SO_*BUFFORCE, which needs CAP_NET_ADMIN; failing that, the kernel
	// caps it.
	socketBufferSize = 7 << 20

	// maxGSOSegments is the most datagrams one UDP_SEGMENT send may carry
	// (UDP_MAX_SEGMENTS; newer kernels allow more) and the most a UDP GRO
	// buffer holds.
	maxGSOSegments = 64

	// Largest UDP payload of one GSO send. A device takes a GSO packet whole
	// only if it is shorter than the device's gso_max_size, 64 KiB on
	// loopback, veth and most NICs, counted with the IP, UDP and link-layer
	// headers; a longer one the kernel splits in software, and the receiver
	// then reads and opens each datagram alone (TestGSOWhole). linkRoom is
	// the room left for the link layer: Ethernet with two VLAN tags is 22.
	linkRoom    = 32
	maxPayload4 = 1<<16 - 1 - 20 - 8 - linkRoom
	maxPayload6 = 1<<16 - 1 - 40 - 8 - linkRoom

	// oobSize is the control buffer per received message; UDP_GRO needs
	// CmsgSpace(4) = 24 bytes, the rest is headroom.
	oobSize = 64
)

// gsoCmsgSpace is the control buffer per sent message: one UDP_SEGMENT cmsg.
var gsoCmsgSpace = unix.CmsgSpace(2)

// UDPConn is a batched UDP socket bound to one address. It implements Conn.
type UDPConn struct {
	uc     *net.UDPConn
	rc     syscall.RawConn
	local  netip.AddrPort
	family int  // unix.AF_INET or unix.AF_INET6
	v6only bool // for AF_INET6: IPv4 peers can not be reached
	closed atomic.Bool

	txOffload atomic.Bool // UDP_SEGMENT is in use
	groCap    atomic.Bool // the kernel supports UDP_GRO; it is switched on on demand
	groOn     atomic.Bool // UDP_GRO is on

	zones zoneCache

	readMu sync.Mutex
	rd     *readState       // guarded by readMu
	poll   *busypoll.Poller // guarded by readMu

	writeMu   sync.Mutex
	writeFree []*writeState // guarded by writeMu

	stats connStats
}

// connStats counts system calls and kernel messages (not datagrams), for
// tests and benchmarks to see whether batching and offload happen.
type connStats struct {
	sendCalls   atomic.Uint64 // sendmmsg calls that sent something
	sendMsgs    atomic.Uint64 // kernel messages sent
	sendGSOMsgs atomic.Uint64 // of which carried a UDP_SEGMENT cmsg
	recvCalls   atomic.Uint64 // recvmmsg calls that returned data
	recvMsgs    atomic.Uint64 // kernel messages received
	recvGROMsgs atomic.Uint64 // of which carried more than one datagram
}

func newUDPConn(uc *net.UDPConn) (*UDPConn, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &UDPConn{uc: uc, rc: rc}
	var serr error
	err = rc.Control(func(fd uintptr) {
		s := int(fd)
		if c.family, serr = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_DOMAIN); serr != nil {
			serr = fmt.Errorf("getsockopt SO_DOMAIN: %w", serr)
			return
		}
		if c.family == unix.AF_INET6 {
			v, err := unix.GetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
			c.v6only = err != nil || v != 0
		}
		// Best effort: a smaller buffer only costs throughput.
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBufferSize)
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBufferSize)
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBufferSize)
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBufferSize)
		// The getsockopts succeed where the kernel knows the options: UDP_SEGMENT
		// since 4.18, reading UDP_GRO back since 5.12 (GRO is older but had bugs
		// before; wireguard-go draws the same line).
		_, err := unix.GetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		c.txOffload.Store(err == nil)
		_, err = unix.GetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_GRO)
		c.groCap.Store(err == nil)
	})
	if err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	c.local = uc.LocalAddr().(*net.UDPAddr).AddrPort()
	if c.family == unix.AF_INET {
		c.local = netip.AddrPortFrom(c.local.Addr().Unmap(), c.local.Port())
	}
	c.rd = newReadState(c)
	c.poll = busypoll.New(rc, &c.closed)
	return c, nil
}

// WaitReadable polls the socket without sleeping until a datagram waits or
// until passes (package busypoll) and reports whether ReadBatch will return
// at once. Call it from the reading goroutine; a closed conn reports false.
func (c *UDPConn) WaitReadable(until time.Time) bool {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.rd.pendHead < len(c.rd.pend) {
		return true // the rest of a GRO read is stashed
	}
	ready, _ := c.poll.Wait(until) // an error comes back from the read
	return ready
}

// LocalAddr returns the bound address; with port 0 at listen, the port chosen.
func (c *UDPConn) LocalAddr() netip.AddrPort { return c.local }

// BatchSize returns IdealBatchSize.
func (c *UDPConn) BatchSize() int { return IdealBatchSize }

// Close closes the socket; blocked ReadBatch and WriteBatch calls return an
// error satisfying errors.Is(err, net.ErrClosed).
func (c *UDPConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("transport: close %s: %w", c.local, net.ErrClosed)
	}
	if err := c.uc.Close(); err != nil {
		return fmt.Errorf("transport: close %s: %w", c.local, err)
	}
	return nil
}

// offload reports whether UDP_SEGMENT is in use, whether the kernel supports
// UDP_GRO, and whether it is on (the first big-buffer read switches it on).
func (c *UDPConn) offload() (gso, groCap, groOn bool) {
	return c.txOffload.Load(), c.groCap.Load(), c.groOn.Load()
}

// disableGSO turns UDP_SEGMENT off for the conn, for good.
func (c *UDPConn) disableGSO(cause error) {
	if c.txOffload.CompareAndSwap(true, false) {
		slog.Warn("transport: UDP GSO refused by the kernel, sending without it",
			"local", c.local, "err", cause)
	}
}

// ---- read side ----

type readState struct {
	c     *UDPConn
	hs    []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	oob   []byte // oobSize per message

	// Per kernel message of the current read.
	bufs  [][]byte // where it was read to
	segs  []int    // datagrams in it
	gsos  []int    // segment size (0: not coalesced)
	addrs []netip.AddrPort

	// views: this read hands out views of the conn's own buffers (the caller
	// gave msgs[0].Buf == nil); own holds them, allocated on first use.
	views bool
	own   [][]byte

	// Datagrams read but not yet returned: pend[pendHead:] describe ranges
	// of spill, each a run of equal-size segments from one sender.
	spill    []byte
	pend     []pendingRun
	pendHead int

	// recvmmsg arguments and results, for the bound callback fn.
	nhs   int
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

type pendingRun struct {
	addr       netip.AddrPort
	gso        int // segment size; the last segment may be shorter
	start, end int // in spill
}

func newReadState(c *UDPConn) *readState {
	s := &readState{
		c:     c,
		hs:    make([]unix.Mmsghdr, IdealBatchSize),
		iovs:  make([]unix.Iovec, IdealBatchSize),
		names: make([]unix.RawSockaddrInet6, IdealBatchSize),
		oob:   make([]byte, IdealBatchSize*oobSize),
		bufs:  make([][]byte, IdealBatchSize),
		segs:  make([]int, IdealBatchSize),
		gsos:  make([]int, IdealBatchSize),
		addrs: make([]netip.AddrPort, IdealBatchSize),
	}
	for i := range s.hs {
		h := &s.hs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
	}
	s.fn = s.recvmmsg
	return s
}

// recvmmsg and sendmmsg use RawSyscall: the socket is non-blocking (the Go
// poller waits for it) and the calls say MSG_DONTWAIT besides, so neither can
// sleep, and announcing them to the scheduler buys nothing but cost. Every
// announced syscall that finds the process's scheduler idle wakes its monitor
// thread, which then polls every 20 µs for a millisecond; on a relay that goes
// idle between bursts that was a tenth of its CPU (docs/perf.md). gVisor's
// fdbased endpoint does the same.
func (s *readState) recvmmsg(fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hs[0])), uintptr(s.nhs), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			s.n, s.errno = int(r), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait for the poller
		default:
			s.n, s.errno = 0, e
			return true
		}
	}
}

// ReadBatch implements Conn.
func (c *UDPConn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.closed.Load() {
		return 0, fmt.Errorf("transport: read %s: %w", c.local, net.ErrClosed)
	}
	s := c.rd
	s.views = msgs[0].Buf == nil
	if s.pendHead < len(s.pend) {
		return s.drain(msgs), nil
	}
	big := s.views || len(msgs[0].Buf) >= MaxSegmentBuf
	if big && !c.groOn.Load() && c.groCap.Load() {
		s.enableGRO()
	}
	switch {
	case !c.groOn.Load():
		return s.readDirect(msgs)
	case big:
		return s.readGRO(msgs)
	default:
		return s.readSpill(msgs)
	}
}

func (s *readState) enableGRO() {
	var serr error
	err := s.c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	})
	if err == nil && serr == nil {
		s.c.groOn.Store(true)
		return
	}
	s.c.groCap.Store(false) // do not try again
	slog.Debug("transport: UDP GRO refused by the kernel", "local", s.c.local, "err", errors.Join(err, serr))
}

// buf returns the buffer to read kernel message i into: the caller's, or in
// view mode one of the conn's own.
func (s *readState) buf(msgs []Message, i int) []byte {
	if !s.views {
		return msgs[i].Buf
	}
	if s.own == nil {
		s.own = make([][]byte, len(s.hs))
	}
	if s.own[i] == nil {
		s.own[i] = make([]byte, MaxSegmentBuf)
	}
	return s.own[i]
}

// setup points kernel message i at buf.
func (s *readState) setup(i int, buf []byte, withOOB bool) {
	h := &s.hs[i].Hdr
	h.Namelen = sizeofSockaddr6
	h.Flags = 0
	if len(buf) > 0 {
		s.iovs[i].Base = &buf[0]
	} else {
		s.iovs[i].Base = nil
	}
	s.iovs[i].SetLen(len(buf))
	if withOOB {
		h.Control = &s.oob[i*oobSize]
		h.SetControllen(oobSize)
	} else {
		h.Control = nil
		h.SetControllen(0)
	}
}

// recv issues recvmmsg for the first nhs prepared messages and forgets the
// caller's buffers afterwards, so that the conn does not keep them alive.
func (s *readState) recv(nhs int) (int, error) {
	s.nhs = nhs
	err := s.c.rc.Read(s.fn)
	for i := range nhs {
		s.iovs[i].Base = nil
	}
	if err != nil {
		return 0, fmt.Errorf("transport: read %s: %w", s.c.local, err)
	}
	if s.errno != 0 {
		return 0, fmt.Errorf("transport: read %s: %w", s.c.local, os.NewSyscallError("recvmmsg", s.errno))
	}
	s.c.stats.recvCalls.Add(1)
	s.c.stats.recvMsgs.Add(uint64(s.n))
	return s.n, nil
}

// readDirect reads one datagram into each message: GRO is off.
func (s *readState) readDirect(msgs []Message) (int, error) {
	k := min(len(msgs), len(s.hs))
	for i := range k {
		s.bufs[i] = s.buf(msgs, i)
		s.setup(i, s.bufs[i], false)
	}
	n, err := s.recv(k)
	if err != nil {
		s.forget(k)
		return 0, err
	}
	for i := range n {
		l := int(s.hs[i].Len)
		if s.views {
			msgs[i].Buf = s.bufs[i][:l:l]
		}
		msgs[i].N = l
		msgs[i].Addr = getSockaddr(&s.names[i], &s.c.zones)
	}
	s.forget(k)
	return n, nil
}

// readGRO reads kernel messages into the leading big buffers (or, in view
// mode, the conn's) and splits them into consecutive msgs: copied into their
// buffers, or in view mode not copied at all.
func (s *readState) readGRO(msgs []Message) (int, error) {
	// GRO coalesces at most maxGSOSegments datagrams, so reading
	// len(msgs)/maxGSOSegments kernel messages normally fits; with fewer msgs
	// one is read. Whatever does not fit (also from a local sender whose GSO
	// message carries more segments, which newer kernels allow) is kept in
	// spill for the next call.
	k := max(1, len(msgs)/maxGSOSegments)
	k = min(k, len(s.hs))
	for i := range k {
		if b := s.buf(msgs, i); len(b) >= MaxSegmentBuf {
			s.bufs[i] = b
		} else {
			k = i
			break
		}
		s.setup(i, s.bufs[i], true)
	}
	n, err := s.recv(k)
	if err != nil {
		s.forget(k)
		return 0, err
	}
	// Count datagrams per kernel message; keep[j] of message j fit in msgs.
	total := 0
	for j := range n {
		l := int(s.hs[j].Len)
		gso := groSize(s.oob[j*oobSize:][:s.hs[j].Hdr.Controllen])
		segs := 1
		if gso > 0 && l > gso {
			segs = (l + gso - 1) / gso
			s.c.stats.recvGROMsgs.Add(1)
		} else {
			gso = 0
		}
		s.segs[j], s.gsos[j] = segs, gso
		s.addrs[j] = getSockaddr(&s.names[j], &s.c.zones)
		if room := len(msgs) - total; segs > room {
			// Keep the rest before splitting overwrites any buffer.
			s.stash(s.bufs[j][room*gso:l], gso, s.addrs[j])
			segs = max(room, 0)
			s.segs[j] = segs
		}
		total += segs
	}
	// Split backwards: message j's datagrams go to msgs[off..off+segs), and
	// off >= j, so a copy never overwrites a message not yet split.
	off := total
	for j := n - 1; j >= 0; j-- {
		segs, gso := s.segs[j], s.gsos[j]
		off -= segs
		if segs == 0 {
			continue
		}
		src := s.bufs[j][:s.hs[j].Len]
		if s.views {
			step := len(src)
			if gso > 0 {
				step = gso
			}
			for i := range segs {
				seg := src[i*step : min((i+1)*step, len(src))]
				msgs[off+i] = Message{Buf: seg[:len(seg):len(seg)], N: len(seg), Addr: s.addrs[j]}
			}
			continue
		}
		if gso == 0 {
			if off != j {
				msgs[off].N = copy(msgs[off].Buf, src)
			} else {
				msgs[off].N = len(src)
			}
			msgs[off].Addr = s.addrs[j]
			continue
		}
		for i := segs - 1; i >= 0; i-- {
			seg := src[i*gso : min((i+1)*gso, len(src))]
			d := &msgs[off+i]
			if off+i == j { // i == 0: already in place
				d.N = len(seg)
			} else {
				d.N = copy(d.Buf, seg)
			}
			d.Addr = s.addrs[j]
		}
	}
	s.forget(k)
	return total, nil
}

// forget drops the references to the caller's buffers of the first k kernel
// messages, so that the conn does not keep them alive.
func (s *readState) forget(k int) {
	if !s.views {
		clear(s.bufs[:k])
	}
}

// readSpill reads one kernel message into the conn's own buffer and returns
// as many of its datagrams as fit; GRO is on but the caller's buffers are small.
func (s *readState) readSpill(msgs []Message) (int, error) {
	if cap(s.spill) < MaxSegmentBuf {
		s.spill = make([]byte, 0, MaxSegmentBuf)
	}
	s.setup(0, s.spill[:MaxSegmentBuf], true)
	if _, err := s.recv(1); err != nil {
		return 0, err
	}
	l := int(s.hs[0].Len)
	gso := groSize(s.oob[:s.hs[0].Hdr.Controllen])
	if gso > 0 && l > gso {
		s.c.stats.recvGROMsgs.Add(1)
	} else {
		gso = 0
	}
	s.spill = s.spill[:l]
	s.pend = append(s.pend[:0], pendingRun{addr: getSockaddr(&s.names[0], &s.c.zones), gso: gso, start: 0, end: l})
	s.pendHead = 0
	return s.drain(msgs), nil
}

// stash appends a run of datagrams to the pending ones.
func (s *readState) stash(b []byte, gso int, addr netip.AddrPort) {
	if s.pendHead == len(s.pend) {
		s.pend, s.pendHead, s.spill = s.pend[:0], 0, s.spill[:0]
	}
	start := len(s.spill)
	s.spill = append(s.spill, b...)
	s.pend = append(s.pend, pendingRun{addr: addr, gso: gso, start: start, end: len(s.spill)})
}

// drain returns pending datagrams into msgs.
func (s *readState) drain(msgs []Message) int {
	n := 0
	for n < len(msgs) && s.pendHead < len(s.pend) {
		r := &s.pend[s.pendHead]
		end := r.end
		if r.gso > 0 {
			end = min(r.start+r.gso, r.end)
		}
		if s.views {
			// Valid until the next read: stash appends only then.
			msgs[n].Buf = s.spill[r.start:end:end]
			msgs[n].N = end - r.start
		} else {
			msgs[n].N = copy(msgs[n].Buf, s.spill[r.start:end])
		}
		msgs[n].Addr = r.addr
		n++
		r.start = end
		if r.start >= r.end {
			s.pendHead++
		}
	}
	if s.pendHead == len(s.pend) {
		s.pend, s.pendHead, s.spill = s.pend[:0], 0, s.spill[:0]
	}
	return n
}

// groSize returns the segment size from a UDP_GRO control message, or 0.
func groSize(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO {
			switch {
			case len(data) >= 4: // the kernel writes an int
				return int(binary.NativeEndian.Uint32(data))
			case len(data) >= 2:
				return int(binary.NativeEndian.Uint16(data))
			}
		}
		oob = rest
	}
	return 0
}

// ---- write side ----

type writeState struct {
	hs    []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	oob   []byte // gsoCmsgSpace per kernel message, headers pre-filled
	first []int  // index in the chunk of the first message of hs[i]
	count []int  // messages coalesced into hs[i]

	// sendmmsg arguments and results, for the bound callback fn.
	start, end int
	n          int
	errno      syscall.Errno
	fn         func(fd uintptr) bool
}

func newWriteState() *writeState {
	w := &writeState{
		hs:    make([]unix.Mmsghdr, IdealBatchSize),
		iovs:  make([]unix.Iovec, IdealBatchSize),
		names: make([]unix.RawSockaddrInet6, IdealBatchSize),
		oob:   make([]byte, IdealBatchSize*gsoCmsgSpace),
		first: make([]int, IdealBatchSize),
		count: make([]int, IdealBatchSize),
	}
	for i := range w.hs {
		w.hs[i].Hdr.Name = (*byte)(unsafe.Pointer(&w.names[i]))
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&w.oob[i*gsoCmsgSpace]))
		cm.Level = unix.SOL_UDP
		cm.Type = unix.UDP_SEGMENT
		cm.SetLen(unix.CmsgLen(2))
	}
	w.fn = w.sendmmsg
	return w
}

func (w *writeState) sendmmsg(fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hs[w.start])), uintptr(w.end-w.start), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			w.n, w.errno = int(r), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait for the poller
		default:
			w.n, w.errno = 0, e
			return true
		}
	}
}

func (c *UDPConn) getWriteState() *writeState {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if n := len(c.writeFree); n > 0 {
		w := c.writeFree[n-1]
		c.writeFree = c.writeFree[:n-1]
		return w
	}
	return newWriteState()
}

func (c *UDPConn) putWriteState(w *writeState) {
	for i := range w.iovs {
		w.iovs[i].Base = nil // do not keep the caller's buffers alive
	}
	c.writeMu.Lock()
	c.writeFree = append(c.writeFree, w)
	c.writeMu.Unlock()
}

// WriteBatch implements Conn.
func (c *UDPConn) WriteBatch(msgs []Message) error {
	if c.closed.Load() {
		return fmt.Errorf("transport: write %s: %w", c.local, net.ErrClosed)
	}
	w := c.getWriteState()
	defer c.putWriteState(w)
	var firstErr error
	for len(msgs) > 0 {
		chunk := msgs[:min(len(msgs), len(w.hs))]
		msgs = msgs[len(chunk):]
		if err := c.writeChunk(w, chunk, c.txOffload.Load(), &firstErr); err != nil {
			return err
		}
	}
	return firstErr
}

// writeChunk sends up to IdealBatchSize messages. Errors that concern one
// message are recorded in *firstErr and the message is skipped; an error of
// the socket itself is returned.
func (c *UDPConn) writeChunk(w *writeState, chunk []Message, gso bool, firstErr *error) error {
	nh := c.pack(w, chunk, gso, firstErr)
	for start := 0; start < nh; {
		w.start, w.end = start, nh
		if err := c.rc.Write(w.fn); err != nil {
			return fmt.Errorf("transport: write %s: %w", c.local, err)
		}
		if w.errno == 0 {
			gsoMsgs := 0
			for i := start; i < start+w.n; i++ {
				if w.count[i] > 1 {
					gsoMsgs++
				}
			}
			c.stats.sendCalls.Add(1)
			c.stats.sendMsgs.Add(uint64(w.n))
			c.stats.sendGSOMsgs.Add(uint64(gsoMsgs))
			start += w.n
			continue
		}
		// sendmmsg stopped at hs[start].
		if w.count[start] > 1 {
			switch w.errno {
			case unix.EIO:
				// No checksum offload on the egress device: GSO can not work.
				c.disableGSO(os.NewSyscallError("sendmmsg", w.errno))
				return c.writeChunk(w, chunk[w.first[start]:], false, firstErr)
			case unix.EINVAL, unix.EMSGSIZE:
				// Most likely a segment larger than the path MTU: send this
				// run without GSO (fragmented like any other datagram) and
				// the rest as before.
				f, n := w.first[start], w.count[start]
				if err := c.writeChunk(w, chunk[f:f+n], false, firstErr); err != nil {
					return err
				}
				return c.writeChunk(w, chunk[f+n:], gso, firstErr)
			}
		}
		if *firstErr == nil {
			m := &chunk[w.first[start]]
			*firstErr = fmt.Errorf("transport: write %s to %s: %w", c.local, m.Addr, os.NewSyscallError("sendmmsg", w.errno))
		}
		start++
	}
	return nil
}

// pack fills w.hs from chunk, coalescing runs for GSO, and returns the number
// of kernel messages.
func (c *UDPConn) pack(w *writeState, chunk []Message, gso bool, firstErr *error) int {
	nh := -1      // index of the kernel message being filled
	segSize := 0  // its segment size
	bytes := 0    // its payload so far
	limit := 0    // its payload limit
	ended := true // it can take no more segments
	var to netip.AddrPort
	for i := range chunk {
		m := &chunk[i]
		if m.N < 0 || m.N > len(m.Buf) {
			if *firstErr == nil {
				*firstErr = fmt.Errorf("transport: write %s: message %d: length %d out of buffer of %d", c.local, i, m.N, len(m.Buf))
			}
			ended = true // a run's iovecs must stay contiguous
			continue
		}
		if gso && !ended && m.Addr == to && m.N > 0 && m.N <= segSize &&
			w.count[nh] < maxGSOSegments && bytes+m.N <= limit {
			iov := &w.iovs[i] // iovecs are per message, so a run's are contiguous
			iov.Base = &m.Buf[0]
			iov.SetLen(m.N)
			w.hs[nh].Hdr.SetIovlen(w.count[nh] + 1)
			w.count[nh]++
			bytes += m.N
			ended = m.N < segSize
			if w.count[nh] == 2 { // now it needs the cmsg
				setGSO(w, nh, segSize)
			}
			continue
		}
		namelen, err := putSockaddr(&w.names[nh+1], m.Addr, c.family, c.v6only, &c.zones)
		if err != nil {
			if *firstErr == nil {
				*firstErr = fmt.Errorf("transport: write %s: %w", c.local, err)
			}
			ended = true
			continue
		}
		nh++
		h := &w.hs[nh].Hdr
		h.Namelen = namelen
		h.Iov = &w.iovs[i]
		h.SetIovlen(1)
		h.Control = nil
		h.SetControllen(0)
		h.Flags = 0
		if m.N > 0 {
			w.iovs[i].Base = &m.Buf[0]
		} else {
			w.iovs[i].Base = nil
		}
		w.iovs[i].SetLen(m.N)
		w.first[nh], w.count[nh] = i, 1
		to, segSize, bytes, ended = m.Addr, m.N, m.N, m.N == 0
		limit = maxPayload6
		if c.family == unix.AF_INET || to.Addr().Unmap().Is4() {
			limit = maxPayload4
		}
	}
	return nh + 1
}

// setGSO attaches a UDP_SEGMENT cmsg with the segment size to kernel message i.
func setGSO(w *writeState, i, segSize int) {
	cm := w.oob[i*gsoCmsgSpace:][:gsoCmsgSpace]
	binary.NativeEndian.PutUint16(cm[unix.CmsgLen(0):], uint16(segSize))
	h := &w.hs[i].Hdr
	h.Control = &cm[0]
	h.SetControllen(len(cm))
}
