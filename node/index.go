package node

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/x0tta6bl4/x0t/handshake"
	"github.com/x0tta6bl4/x0t/session"
)

// indexEntry is what a receiver index names: a keypair of a peer, or one of our
// initiations waiting for its response.
type indexEntry struct {
	peer *Peer
	kp   *session.Keypair
	init *handshake.Initiator
}

// indexTable maps receiver indexes to entries. Readers (every received packet)
// load an immutable map without locking; writers (a few per handshake) copy it.
type indexTable struct {
	mu sync.Mutex
	m  atomic.Pointer[map[uint32]indexEntry]
}

func newIndexTable() *indexTable {
	t := &indexTable{}
	m := map[uint32]indexEntry{}
	t.m.Store(&m)
	return t
}

func (t *indexTable) lookup(idx uint32) (indexEntry, bool) {
	e, ok := (*t.m.Load())[idx]
	return e, ok
}

// update applies fn to a copy of the map and publishes it.
func (t *indexTable) update(fn func(m map[uint32]indexEntry)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.m.Load()
	m := make(map[uint32]indexEntry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	fn(m)
	t.m.Store(&m)
}

// allocate reserves a fresh random index for e. Random indexes keep an off-path
// attacker from guessing which index a session uses.
func (t *indexTable) allocate(e indexEntry) uint32 {
	var idx uint32
	t.update(func(m map[uint32]indexEntry) {
		for {
			var b [4]byte
			rand.Read(b[:])
			idx = binary.LittleEndian.Uint32(b[:])
			if _, used := m[idx]; !used && idx != 0 {
				m[idx] = e
				return
			}
		}
	})
	return idx
}

func (t *indexTable) set(idx uint32, e indexEntry) {
	t.update(func(m map[uint32]indexEntry) { m[idx] = e })
}

func (t *indexTable) remove(idxs ...uint32) {
	if len(idxs) == 0 {
		return
	}
	t.update(func(m map[uint32]indexEntry) {
		for _, i := range idxs {
			delete(m, i)
		}
	})
}

func (t *indexTable) len() int { return len(*t.m.Load()) }
