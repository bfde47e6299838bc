package lab

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/transport"
)

// TestCutConnViews: a read in view mode whose datagrams all came over a cut
// link is followed by another read, which must hand over the next datagram
// whole (in view mode), not squeezed into the views the first one left.
func TestCutConnViews(t *testing.T) {
	listen := func() *transport.UDPConn {
		c, err := transport.ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b, c := listen(), listen(), listen()
	cuts := &cutSet{cut: map[[2]netip.AddrPort]bool{pair(a.LocalAddr(), b.LocalAddr()): true}, loss: map[[2]netip.AddrPort]float64{}}
	rb := &cutConn{Conn: b, self: b.LocalAddr(), cuts: cuts}

	if err := a.WriteBatch([]transport.Message{{Buf: []byte("cut"), N: 3, Addr: b.LocalAddr()}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // a's datagram is read first, alone
	want := bytes.Repeat([]byte{0xab}, 1400)
	if err := c.WriteBatch([]transport.Message{{Buf: want, N: len(want), Addr: b.LocalAddr()}}); err != nil {
		t.Fatal(err)
	}
	msgs := make([]transport.Message, 8)
	timer := time.AfterFunc(5*time.Second, func() { b.Close() })
	defer timer.Stop()
	n, err := rb.ReadBatch(msgs)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || msgs[0].Addr != c.LocalAddr() || !bytes.Equal(msgs[0].Buf[:msgs[0].N], want) {
		t.Fatalf("got %d datagrams, the first %d bytes from %v; want c's %d bytes", n, msgs[0].N, msgs[0].Addr, len(want))
	}
}
