package overlay

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

const (
	// netstackBatch is how many packets one Read may return. The stack emits
	// packets one by one; handing them over in batches lets the data plane
	// amortise its per-batch costs as it does on a kernel TUN.
	netstackBatch = 64
	// netstackQueueLen matches the depth of gVisor's channel endpoint.
	netstackQueueLen = 1024
)

// Netstack is a userspace TCP/IP stack (gVisor, through wireguard-go's
// tun/netstack) behind a [Device]: the node reads what the stack sends and
// writes what it should receive, while programs in the same process use
// [Netstack.Net] to dial and listen inside the overlay. It needs no root and
// no kernel device, so many nodes can share one process.
//
// Packets the stack sends are pumped into a bounded queue at once, so the
// stack never waits for the node's reader: upstream hands packets over on an
// unbuffered channel from inside the stack's own goroutines, and a reader
// that is itself blocked writing into the stack would deadlock it. When the
// queue is full, packets are dropped and counted (see Dropped), as a NIC
// ring or a kernel TUN queue would drop them.
type Netstack struct {
	inner tun.Device
	net   *netstack.Net
	out   *pktQueue
	dev   netstackDevice

	dropped   atomic.Uint64
	closed    atomic.Bool
	pumpDone  chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// NewNetstack creates a netstack holding addrs (host addresses, no prefix:
// every destination is routed to the device) with the given MTU (DefaultMTU
// if 0). IPv6 needs an MTU of at least 1280.
func NewNetstack(addrs []netip.Addr, mtu int) (*Netstack, error) {
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if len(addrs) == 0 {
		return nil, errors.New("overlay: new netstack: no addresses")
	}
	hasV6 := false
	for _, a := range addrs {
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			return nil, fmt.Errorf("overlay: new netstack: invalid address %v", a)
		}
		hasV6 = hasV6 || a.Is6()
	}
	if err := checkMTU(mtu, hasV6); err != nil {
		return nil, fmt.Errorf("overlay: new netstack: %w", err)
	}
	inner, tnet, err := netstack.CreateNetTUN(addrs, nil, mtu)
	if err != nil {
		return nil, fmt.Errorf("overlay: new netstack: %w", err)
	}
	s := &Netstack{
		inner:    inner,
		net:      tnet,
		out:      newPktQueue(netstackQueueLen),
		pumpDone: make(chan struct{}),
	}
	s.dev = netstackDevice{s}
	go s.pump()
	return s, nil
}

// checkMTU rejects MTUs the kernel or gVisor would refuse later with a less
// helpful error: IPv4 needs 68, IPv6 needs 1280, and lengths are 16 bits.
func checkMTU(mtu int, hasV6 bool) error {
	lo := 68
	if hasV6 {
		lo = 1280
	}
	if mtu < lo || mtu > maxPacket {
		return fmt.Errorf("MTU %d out of range [%d, %d]", mtu, lo, maxPacket)
	}
	return nil
}

// pump moves every packet the stack sends into s.out until the stack closes.
// It keeps draining after Close so that a stack goroutine that is still
// sending is never left blocked.
func (s *Netstack) pump() {
	defer close(s.pumpDone)
	buf := make([]byte, maxPacket)
	bufs, sizes := [][]byte{buf}, []int{0}
	for {
		n, err := s.inner.Read(bufs, sizes, 0)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		if n == 0 {
			continue
		}
		one := [1][]byte{buf[:sizes[0]]}
		if k, err := s.out.push(one[:], 0, false); k == 0 && err == nil {
			s.dropped.Add(1)
		}
	}
}

// Device returns the node's side of the stack.
func (s *Netstack) Device() Device { return s.dev }

// Net returns the stack's socket API (DialContext, ListenTCP, ListenUDP,
// DialPing, ...) for programs that talk inside the overlay.
func (s *Netstack) Net() *netstack.Net { return s.net }

// Dropped reports how many packets the stack sent while the Read queue was
// full, so they were lost.
func (s *Netstack) Dropped() uint64 { return s.dropped.Load() }

// Close shuts the stack down: Read returns os.ErrClosed, sockets from Net
// fail. It is idempotent; closing the Device does the same.
func (s *Netstack) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.out.close()
		if err := s.inner.Close(); err != nil {
			s.closeErr = fmt.Errorf("overlay: close netstack: %w", err)
		}
		<-s.pumpDone
	})
	return s.closeErr
}

// netstackDevice is the Device view of a Netstack; a separate type keeps the
// Device methods off Netstack's own API.
type netstackDevice struct{ s *Netstack }

func (d netstackDevice) File() *os.File { return nil }

// Read returns up to min(len(bufs), BatchSize()) packets the stack sent.
func (d netstackDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) > netstackBatch {
		bufs = bufs[:netstackBatch]
	}
	return d.s.out.pop(bufs, sizes, offset, false)
}

// Write delivers packets to the stack. Upstream copies each packet, so the
// caller may reuse bufs at once.
func (d netstackDevice) Write(bufs [][]byte, offset int) (int, error) {
	if d.s.closed.Load() {
		return 0, os.ErrClosed
	}
	return d.s.inner.Write(bufs, offset)
}

func (d netstackDevice) MTU() (int, error)        { return d.s.inner.MTU() }
func (d netstackDevice) Name() (string, error)    { return d.s.inner.Name() }
func (d netstackDevice) Events() <-chan tun.Event { return d.s.inner.Events() }
func (d netstackDevice) BatchSize() int           { return netstackBatch }
func (d netstackDevice) Close() error             { return d.s.Close() }
