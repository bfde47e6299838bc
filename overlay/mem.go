package overlay

import (
	"fmt"
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
)

// memQueueLen is how many packets each direction of a MemDevice buffers; it
// is at least 8 batches so a benchmark's producer rarely waits for the node.
const memQueueLen = 1024

// MemDevice is an in-memory [Device] for unit tests and benchmarks of the data
// plane, so they are limited neither by a kernel device nor by root.
//
// The test side feeds packets with Inject (the node then Reads them) and
// collects what the node Wrote with ReadWritten or Written. Both directions
// are bounded queues of reusable slots: Inject, Read, Write and ReadWritten
// allocate nothing in steady state. Write copies each packet into the queue
// (so the node may reuse its buffers at once, as with a kernel TUN) and, like
// Inject, waits while the queue is full: a test must drain what the node
// writes, with ReadWritten or Written.
type MemDevice struct {
	mtu    int
	batch  int
	in     *pktQueue // Inject -> Read
	out    *pktQueue // Write -> ReadWritten
	events chan tun.Event

	closeOnce   sync.Once
	writtenOnce sync.Once
	written     chan []byte
}

var _ Device = (*MemDevice)(nil)

// NewMemDevice returns an open MemDevice that reports mtu (DefaultMTU if
// mtu <= 0) and reads at most batch packets per Read (1 if batch <= 0). Its
// Events channel starts with tun.EventUp, as wireguard-go's devices do.
func NewMemDevice(mtu int, batch int) *MemDevice {
	if mtu <= 0 {
		mtu = DefaultMTU
	}
	if batch <= 0 {
		batch = 1
	}
	qlen := max(memQueueLen, 8*batch)
	d := &MemDevice{
		mtu:    mtu,
		batch:  batch,
		in:     newPktQueue(qlen),
		out:    newPktQueue(qlen),
		events: make(chan tun.Event, 1),
	}
	d.events <- tun.EventUp
	return d
}

// Inject copies pkts, in order, and queues them for Read, waiting while the
// queue is full; passing many at once costs one lock round trip. It fails
// after Close, or for a packet larger than 65535 bytes.
func (d *MemDevice) Inject(pkts ...[]byte) error {
	if _, err := d.in.push(pkts, 0, true); err != nil {
		return fmt.Errorf("overlay: mem inject: %w", err)
	}
	return nil
}

// ReadWritten is the test side's Read: it waits for packets the node wrote
// and copies up to len(bufs) of them into bufs[i], setting sizes[i]. After
// Close it still returns what was written before, then os.ErrClosed. It does
// not allocate, so benchmarks use it to drain the device.
func (d *MemDevice) ReadWritten(bufs [][]byte, sizes []int) (int, error) {
	return d.out.pop(bufs, sizes, 0, true)
}

// Written returns a channel that yields a fresh copy of each packet the node
// writes, and is closed after Close once drained. It is the convenient form
// for tests; it allocates per packet, and its goroutine competes with
// ReadWritten, so use one or the other.
func (d *MemDevice) Written() <-chan []byte {
	d.writtenOnce.Do(func() {
		d.written = make(chan []byte, d.batch)
		go d.pumpWritten()
	})
	return d.written
}

func (d *MemDevice) pumpWritten() {
	defer close(d.written)
	bufs := make([][]byte, min(d.batch, 16))
	for i := range bufs {
		bufs[i] = make([]byte, maxPacket)
	}
	sizes := make([]int, len(bufs))
	for {
		n, err := d.ReadWritten(bufs, sizes)
		for i := range n {
			d.written <- append([]byte(nil), bufs[i][:sizes[i]]...)
		}
		if err != nil {
			return
		}
	}
}

// Queued reports how many injected packets wait for Read and how many written
// packets wait for ReadWritten, for tests that check back-pressure.
func (d *MemDevice) Queued() (toRead, written int) {
	return d.in.len(), d.out.len()
}

// File returns nil: there is no file descriptor behind a MemDevice.
func (d *MemDevice) File() *os.File { return nil }

// Read waits for injected packets and copies up to min(len(bufs), batch) of
// them into bufs[i][offset:]. After Close it returns os.ErrClosed at once,
// dropping what was still queued, as a closed kernel device does.
func (d *MemDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) > d.batch {
		bufs = bufs[:d.batch]
	}
	return d.in.pop(bufs, sizes, offset, false)
}

// Write copies each bufs[i][offset:] into the written queue, waiting while it
// is full, and returns the number of packets written (empty ones are skipped
// and counted). After Close it returns os.ErrClosed.
func (d *MemDevice) Write(bufs [][]byte, offset int) (int, error) {
	return d.out.push(bufs, offset, true)
}

// MTU returns the MTU given to NewMemDevice.
func (d *MemDevice) MTU() (int, error) { return d.mtu, nil }

// Name returns "mem".
func (d *MemDevice) Name() (string, error) { return "mem", nil }

// Events returns the device's event channel, closed by Close.
func (d *MemDevice) Events() <-chan tun.Event { return d.events }

// BatchSize returns the batch given to NewMemDevice.
func (d *MemDevice) BatchSize() int { return d.batch }

// Close unblocks Read, Write and Inject with os.ErrClosed and closes Events.
// It is idempotent.
func (d *MemDevice) Close() error {
	d.closeOnce.Do(func() {
		d.in.close()
		d.out.close()
		close(d.events)
	})
	return nil
}
