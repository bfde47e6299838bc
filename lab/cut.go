package lab

import (
	"math/rand/v2"
	"net/netip"
	"sync"

	"github.com/x0tta6bl4/x0t/transport"
)

// Links between lab nodes are loopback sockets; a cut drops every datagram
// between two of them in both directions, as a pulled cable would.

type cutSet struct {
	mu   sync.RWMutex
	cut  map[[2]netip.AddrPort]bool
	loss map[[2]netip.AddrPort]float64
}

func pair(a, b netip.AddrPort) [2]netip.AddrPort {
	if a.String() > b.String() {
		a, b = b, a
	}
	return [2]netip.AddrPort{a, b}
}

// isCut reports whether a datagram between a and b is dropped: the link is
// cut, or it is lossy and this datagram is one of the lost.
func (c *cutSet) isCut(a, b netip.AddrPort) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	k := pair(a, b)
	if c.cut[k] {
		return true
	}
	p := c.loss[k]
	return p > 0 && rand.Float64() < p
}

// EnableCuts makes links between nodes started from now on cuttable.
func (m *Mesh) EnableCuts() {
	m.cuts = &cutSet{cut: map[[2]netip.AddrPort]bool{}, loss: map[[2]netip.AddrPort]float64{}}
}

// SetLoss makes the link between two nodes drop each datagram with
// probability p (0 restores it).
func (m *Mesh) SetLoss(a, b *Node, p float64) {
	m.cuts.mu.Lock()
	defer m.cuts.mu.Unlock()
	m.cuts.loss[pair(a.Conn.LocalAddr(), b.Conn.LocalAddr())] = p
}

// Cut severs the link between two nodes (both directions).
func (m *Mesh) Cut(a, b *Node) { m.setCut(a, b, true) }

// Mend restores a cut link.
func (m *Mesh) Mend(a, b *Node) { m.setCut(a, b, false) }

func (m *Mesh) setCut(a, b *Node, cut bool) { m.cuts.set(a, b, cut) }

func (c *cutSet) set(a, b *Node, cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := pair(a.Conn.LocalAddr(), b.Conn.LocalAddr())
	if cut {
		c.cut[k] = true
	} else {
		delete(c.cut, k)
	}
}

// cutConn drops datagrams across cut links.
type cutConn struct {
	transport.Conn
	self netip.AddrPort
	cuts *cutSet
}

func (c *cutConn) WriteBatch(msgs []transport.Message) error {
	keep := msgs[:0:0]
	for _, m := range msgs {
		if !c.cuts.isCut(c.self, m.Addr) {
			keep = append(keep, m)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	return c.Conn.WriteBatch(keep)
}

func (c *cutConn) ReadBatch(msgs []transport.Message) (int, error) {
	views := len(msgs) > 0 && msgs[0].Buf == nil
	for {
		if views {
			// The read that came to nothing left views in msgs; this one
			// must be in view mode too, not copy into those.
			msgs[0].Buf = nil
		}
		n, err := c.Conn.ReadBatch(msgs)
		if err != nil {
			return n, err
		}
		k := 0
		for i := range n {
			if c.cuts.isCut(c.self, msgs[i].Addr) {
				continue
			}
			if k != i {
				msgs[k], msgs[i] = msgs[i], msgs[k]
			}
			k++
		}
		if k > 0 {
			return k, nil
		}
	}
}
