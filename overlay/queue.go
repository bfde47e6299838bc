package overlay

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// pktQueue is a bounded FIFO of packet copies held in reusable slots. Each
// slot keeps the largest buffer it has held, so a steady stream of packets
// allocates nothing, and memory grows only to the high-water mark (which
// matters when a simulator runs thousands of devices). One lock round trip
// moves a whole batch.
type pktQueue struct {
	mu       sync.Mutex
	nonEmpty sync.Cond
	nonFull  sync.Cond
	slots    [][]byte // ring; slots[i][:len] is the packet, cap is reused
	head     int      // index of the oldest packet
	n        int      // packets queued
	closed   bool
}

func newPktQueue(capacity int) *pktQueue {
	q := &pktQueue{slots: make([][]byte, capacity)}
	q.nonEmpty.L = &q.mu
	q.nonFull.L = &q.mu
	return q
}

// push copies pkts[i][offset:] into the queue, in order, and returns how many
// it queued. Empty packets are skipped but counted. When the queue is full it
// waits for room if wait is set, and otherwise drops the rest (like a NIC
// ring) and returns the count so far. It returns os.ErrClosed once closed.
func (q *pktQueue) push(pkts [][]byte, offset int, wait bool) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	done := 0
	for _, p := range pkts {
		p = p[offset:]
		if len(p) > maxPacket {
			return done, fmt.Errorf("overlay: packet of %d bytes exceeds %d", len(p), maxPacket)
		}
		if len(p) == 0 {
			done++
			continue
		}
		for !q.closed && q.n == len(q.slots) && wait {
			q.nonFull.Wait()
		}
		if q.closed {
			return done, os.ErrClosed
		}
		if q.n == len(q.slots) {
			break // full and not waiting: drop the rest
		}
		i := (q.head + q.n) % len(q.slots)
		q.slots[i] = append(q.slots[i][:0], p...)
		q.n++
		done++
		if q.n == 1 {
			q.nonEmpty.Signal()
		}
	}
	if q.n < len(q.slots) {
		q.nonFull.Signal() // another writer may use the room left
	}
	return done, nil
}

// pop waits for at least one packet, then copies up to len(bufs) packets into
// bufs[i][offset:] and sets sizes[i]. Once the queue is closed it returns
// os.ErrClosed: at once if drain is false, or when it is empty if drain is
// true. A packet that does not fit its buffer stops the batch; if it is the
// first one it is dropped and reported with io.ErrShortBuffer, so a reader
// with too small buffers cannot wedge the queue.
func (q *pktQueue) pop(bufs [][]byte, sizes []int, offset int, drain bool) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n == 0 && !q.closed {
		q.nonEmpty.Wait()
	}
	if q.closed && (!drain || q.n == 0) {
		return 0, os.ErrClosed
	}
	wasFull := q.n == len(q.slots)
	k := 0
	var err error
	for k < len(bufs) && q.n > 0 {
		p := q.slots[q.head]
		if len(bufs[k])-offset < len(p) {
			if k == 0 {
				q.head = (q.head + 1) % len(q.slots)
				q.n--
				err = fmt.Errorf("overlay: read: packet of %d bytes dropped, buffer holds %d: %w",
					len(p), len(bufs[k])-offset, io.ErrShortBuffer)
			}
			break
		}
		sizes[k] = copy(bufs[k][offset:], p)
		q.head = (q.head + 1) % len(q.slots)
		q.n--
		k++
	}
	if q.n == 0 {
		q.head = 0 // reuse the same low slots: memory follows the high-water mark
	}
	if wasFull && q.n < len(q.slots) {
		q.nonFull.Signal()
	}
	if q.n > 0 {
		q.nonEmpty.Signal() // another reader may take the rest
	}
	return k, err
}

// close wakes every waiter; queued packets stay readable with drain.
func (q *pktQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.nonEmpty.Broadcast()
	q.nonFull.Broadcast()
}

// len reports the number of queued packets.
func (q *pktQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
