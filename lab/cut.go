package lab

import (
	"net/netip"
	"sync"

	"github.com/x0tta6bl4/x0t/transport"
)

// Links between lab nodes are loopback sockets; a cut drops every datagram
// between two of them in both directions, as a pulled cable would.

type cutSet struct {
	mu  sync.RWMutex
	cut map[[2]netip.AddrPort]bool
}

func pair(a, b netip.AddrPort) [2]netip.AddrPort {
	if a.String() > b.String() {
		a, b = b, a
	}
	return [2]netip.AddrPort{a, b}
}

func (c *cutSet) isCut(a, b netip.AddrPort) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cut[pair(a, b)]
}

// EnableCuts makes links between nodes started from now on cuttable.
func (m *Mesh) EnableCuts() { m.cuts = &cutSet{cut: map[[2]netip.AddrPort]bool{}} }

// Cut severs the link between two nodes (both directions).
func (m *Mesh) Cut(a, b *Node) { m.setCut(a, b, true) }

// Mend restores a cut link.
func (m *Mesh) Mend(a, b *Node) { m.setCut(a, b, false) }

func (m *Mesh) setCut(a, b *Node, cut bool) {
	m.cuts.mu.Lock()
	defer m.cuts.mu.Unlock()
	k := pair(a.Conn.LocalAddr(), b.Conn.LocalAddr())
	if cut {
		m.cuts.cut[k] = true
	} else {
		delete(m.cuts.cut, k)
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
	for {
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
