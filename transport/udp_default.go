//go:build !linux

package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
)

// UDPConn is a UDP socket bound to one address. It implements Conn. On this
// platform it moves one datagram per system call, without offloads.
type UDPConn struct {
	uc     *net.UDPConn
	local  netip.AddrPort
	closed atomic.Bool
	own    []byte // the read buffer in view mode, which has one reader
}

func newUDPConn(uc *net.UDPConn) (*UDPConn, error) {
	return &UDPConn{uc: uc, local: uc.LocalAddr().(*net.UDPAddr).AddrPort()}, nil
}

// LocalAddr returns the bound address; with port 0 at listen, the port chosen.
func (c *UDPConn) LocalAddr() netip.AddrPort { return c.local }

// BatchSize returns 1: there is no batched system call here.
func (c *UDPConn) BatchSize() int { return 1 }

// Close closes the socket; blocked calls return an error satisfying
// errors.Is(err, net.ErrClosed).
func (c *UDPConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("transport: close %s: %w", c.local, net.ErrClosed)
	}
	if err := c.uc.Close(); err != nil {
		return fmt.Errorf("transport: close %s: %w", c.local, err)
	}
	return nil
}

// ReadBatch implements Conn, one datagram per call.
func (c *UDPConn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	buf := msgs[0].Buf
	if buf == nil { // view mode
		if c.own == nil {
			c.own = make([]byte, MaxSegmentBuf)
		}
		buf = c.own
	}
	n, ap, err := c.uc.ReadFromUDPAddrPort(buf)
	if err != nil {
		return 0, fmt.Errorf("transport: read %s: %w", c.local, err)
	}
	if msgs[0].Buf == nil {
		msgs[0].Buf = buf[:n:n]
	}
	msgs[0].N = n
	msgs[0].Addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return 1, nil
}

// WriteBatch implements Conn, one datagram per system call.
func (c *UDPConn) WriteBatch(msgs []Message) error {
	var firstErr error
	for i := range msgs {
		m := &msgs[i]
		if m.N < 0 || m.N > len(m.Buf) {
			if firstErr == nil {
				firstErr = fmt.Errorf("transport: write %s: message %d: length %d out of buffer of %d", c.local, i, m.N, len(m.Buf))
			}
			continue
		}
		_, err := c.uc.WriteToUDPAddrPort(m.Buf[:m.N], m.Addr)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("transport: write %s: %w", c.local, err)
			}
			if firstErr == nil {
				firstErr = fmt.Errorf("transport: write %s to %s: %w", c.local, m.Addr, err)
			}
		}
	}
	return firstErr
}
