package session

import (
	"sync"
	"sync/atomic"
)

// The replay filter is the bitmap ring of RFC 6479: a window of counters below
// the highest one seen, kept as 64-bit blocks in a ring so that sliding the
// window forward clears whole blocks instead of shifting bits.
const (
	blockBits  = 64
	ringBlocks = 128
	// ReplayWindow is how far below the highest counter seen a packet may still
	// arrive (reordering across batches and parallel queues).
	ReplayWindow = (ringBlocks - 1) * blockBits // 8128
)

// ReplayFilter accepts each counter at most once, and none that is older than
// ReplayWindow below the highest accepted. It is safe for concurrent use.
type ReplayFilter struct {
	mu      sync.Mutex
	highest uint64
	any     bool
	ring    [ringBlocks]uint64

	// Copies of highest and any for mayAccept, which takes no lock.
	seen atomic.Bool
	top  atomic.Uint64
}

// mayAccept is a cheap check before decryption, without the lock: false for a
// counter below the window, which is certainly refused. Accept decides; like
// WireGuard's, a replay inside the window costs one decryption, as a forgery does.
func (f *ReplayFilter) mayAccept(c uint64) bool {
	if !f.seen.Load() {
		return true
	}
	top := f.top.Load()
	return c > top || top-c < ReplayWindow
}

func (f *ReplayFilter) check(c uint64) bool {
	if !f.any || c > f.highest {
		return true
	}
	if f.highest-c >= ReplayWindow {
		return false
	}
	return f.ring[(c/blockBits)%ringBlocks]&(1<<(c%blockBits)) == 0
}

// Accept records counter c and reports whether it was new and inside the window.
func (f *ReplayFilter) Accept(c uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.check(c) {
		return false
	}
	if !f.any {
		clear(f.ring[:])
		f.highest, f.any = c, true
	} else if c > f.highest {
		// Clear the blocks the window slides onto.
		from, cur := f.highest/blockBits+1, c/blockBits
		if cur >= from {
			if cur-from >= ringBlocks {
				clear(f.ring[:])
			} else {
				for b := from; b <= cur; b++ {
					f.ring[b%ringBlocks] = 0
				}
			}
		}
		f.highest = c
	}
	f.top.Store(f.highest)
	f.seen.Store(true)
	f.ring[(c/blockBits)%ringBlocks] |= 1 << (c % blockBits)
	return true
}
