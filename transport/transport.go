// Package transport is the underlay datagram layer of the data plane: it moves
// batches of already-encrypted packets between nodes.
//
// # Why it looks like this
//
// The data plane reads a batch of IP packets from the overlay device, seals each
// in place and hands the batch to [Conn.WriteBatch]; on the way in it reads a batch
// with [Conn.ReadBatch], opens each packet and writes the batch to the device.
// Per-packet system calls would cap throughput far below the link, so the UDP
// implementation ([UDPConn]) does what wireguard-go's conn.StdNetBind does, in its
// own way:
//
//   - sendmmsg/recvmmsg move a whole batch per system call. They are issued
//     directly through the socket's syscall.RawConn (so the Go poller still
//     parks a goroutine that would block) with mmsghdr, iovec, sockaddr and
//     control-message arrays that the conn owns and reuses. golang.org/x/net's
//     PacketConn.ReadBatch would do the same system call, but it allocates a
//     *net.UDPAddr and a net.IP for every datagram received, and the hot path
//     must not allocate; talking netip.AddrPort straight to raw sockaddrs avoids it.
//   - UDP GSO (the UDP_SEGMENT control message): consecutive messages to the
//     same address with equal length (the last may be shorter) become one
//     kernel message that the kernel, or the NIC, cuts back into datagrams.
//     The messages are not copied together: each one is an iovec of the same
//     msghdr. If the kernel refuses (EIO: the egress device has no checksum
//     offload, which GSO needs), GSO is switched off for the conn and the
//     batch is resent without it; EINVAL/EMSGSIZE on a coalesced message (a
//     segment larger than the path MTU) resends just that run without GSO.
//   - UDP GRO (the UDP_GRO socket option and control message): the kernel may
//     hand over many datagrams of one flow as one buffer plus a segment size;
//     ReadBatch splits them into consecutive Messages. A coalesced read can be
//     up to 64 KiB, so GRO needs big buffers: it is switched on only the first
//     time a caller gives a first buffer of at least [MaxSegmentBuf] bytes, and
//     reads are then issued only into such buffers. A conn whose callers always
//     give small buffers never turns GRO on and reads straight into them. If a
//     caller gives small buffers after GRO is on, reads go one kernel message
//     at a time through a buffer held by the conn, so nothing is truncated.
//     Datagrams that do not fit the caller's Messages are kept and returned by
//     the next ReadBatch. Splitting copies each datagram into its Message's
//     buffer, unless the caller asks for views (msgs[0].Buf == nil): then the
//     conn reads into its own big buffers and each Message points at its
//     datagram where it landed. A relay, which only rewrites a header and sends
//     the datagram on, so moves it from socket to socket without a copy in user
//     space (the data plane copies only what it writes to the device).
//
// Reads and writes run concurrently. The read side keeps state between calls
// (datagrams split off a GRO buffer that did not fit), so ReadBatch calls are
// serialized by a mutex; the data plane reads from one goroutine anyway.
// WriteBatch may be called from several goroutines: each call takes its own
// scratch arrays from a small free list, so writers only meet in the kernel.
//
// A UDPConn binds exactly one address: "0.0.0.0:p" is IPv4 only, "[::]:p" is
// dual-stack where the host allows it, and a specific address binds just that.
// On a dual-stack socket IPv4 peers appear as plain IPv4 AddrPorts, never as
// IPv4-mapped IPv6, and either form can be given to WriteBatch.
//
// Subpackage memnet provides the same [Conn] over an in-memory network with
// per-link loss, delay and cuts, for tests and the simulator.
package transport

import (
	"fmt"
	"net"
	"net/netip"
)

// Message is one datagram. For ReadBatch, Buf is the caller's buffer (its len is the capacity
// available) and the conn sets N and Addr; or, in view mode, the conn sets Buf too. For
// WriteBatch, Buf[:N] is sent to Addr.
type Message struct {
	Buf  []byte
	N    int
	Addr netip.AddrPort
}

// Conn is a batched datagram socket.
type Conn interface {
	// ReadBatch blocks until at least one datagram is available and fills msgs[:n].
	// With UDP GRO a single kernel read may carry several datagrams; they are split
	// into consecutive msgs (so callers should give buffers of at least MaxSegmentBuf bytes
	// to the first entries, or GRO is simply not used for reads whose buffers are smaller).
	//
	// View mode: a caller that gives msgs[0].Buf == nil gets views instead of
	// copies. The conn reads into buffers of its own and sets each msgs[i].Buf to
	// exactly its datagram (len and cap N) in place, so that a split GRO read
	// costs no copy. Views stay valid until the next ReadBatch (so one goroutine reads); the caller may
	// change the bytes of a view (cap keeps it inside its datagram), and passes
	// msgs[0].Buf == nil again to read the next batch the same way.
	//
	// After Close it returns an error satisfying errors.Is(err, net.ErrClosed).
	ReadBatch(msgs []Message) (n int, err error)
	// WriteBatch sends all msgs (in order per destination). Consecutive messages to the same
	// Addr with equal length (the last may be shorter) are coalesced with UDP GSO when available.
	// It returns the first error; a message that can not be sent is not retried.
	WriteBatch(msgs []Message) error
	LocalAddr() netip.AddrPort
	BatchSize() int // max msgs per call the conn handles efficiently (e.g. 128)
	Close() error
}

// MaxSegmentBuf is the buffer size that lets a read carry a full GRO batch.
const MaxSegmentBuf = 65535

// IdealBatchSize is the number of messages per call that UDPConn handles in
// one system call; its BatchSize reports it on Linux.
const IdealBatchSize = 128

var _ Conn = (*UDPConn)(nil)

// ListenUDP opens a UDP socket bound to addr. Port 0 picks an ephemeral port.
// An IPv4 address (or an IPv4-mapped one) gives an IPv4 socket, "[::]" a
// dual-stack socket where the host supports it, any other IPv6 address an
// IPv6-only socket.
func ListenUDP(addr netip.AddrPort) (*UDPConn, error) {
	if !addr.IsValid() {
		return nil, fmt.Errorf("transport: listen: invalid address %v", addr)
	}
	a := addr.Addr().Unmap()
	network := "udp6"
	switch {
	case a.Is4():
		network = "udp4"
	case a.IsUnspecified():
		network = "udp" // the wildcard: Go makes an AF_INET6 socket with IPV6_V6ONLY off
	}
	uc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, addr.Port())))
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", addr, err)
	}
	c, err := newUDPConn(uc)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("transport: listen %s: %w", addr, err)
	}
	return c, nil
}
