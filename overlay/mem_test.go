package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

const off = 16 // the data plane's headroom

func newBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, off+size)
	}
	return bufs, make([]int, n)
}

func TestMemDeviceRoundTrip(t *testing.T) {
	d := NewMemDevice(1420, 4)
	defer d.Close()
	if ev := <-d.Events(); ev != tun.EventUp {
		t.Fatalf("first event %v, want EventUp", ev)
	}
	if mtu, _ := d.MTU(); mtu != 1420 || d.BatchSize() != 4 {
		t.Fatalf("MTU %d batch %d", mtu, d.BatchSize())
	}

	// Inject copies: changing the caller's slice afterwards changes nothing.
	var want [][]byte
	for i := range 6 {
		p := PacketUDP(netip.AddrPortFrom(v4b, 1000), netip.AddrPortFrom(v4a, uint16(i)), []byte(fmt.Sprint("pkt", i)))
		want = append(want, append([]byte(nil), p...))
		if err := d.Inject(p); err != nil {
			t.Fatal(err)
		}
		clear(p)
	}
	bufs, sizes := newBufs(8, 1500)
	n, err := d.Read(bufs, sizes, off)
	if err != nil || n != 4 {
		t.Fatalf("Read = %d, %v; want 4 (the batch size)", n, err)
	}
	n2, err := d.Read(bufs[4:], sizes[4:], off)
	if err != nil || n2 != 2 {
		t.Fatalf("second Read = %d, %v; want 2", n2, err)
	}
	for i := range 6 {
		if got := bufs[i][off : off+sizes[i]]; !bytes.Equal(got, want[i]) {
			t.Errorf("packet %d differs", i)
		}
	}

	// What the node writes comes out, in order, as copies.
	for i := range 6 {
		bufs[i] = bufs[i][:off+sizes[i]]
	}
	if n, err := d.Write(bufs[:6], off); n != 6 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	clear(bufs[0])
	w := d.Written()
	for i := range 6 {
		select {
		case p := <-w:
			if !bytes.Equal(p, want[i]) {
				t.Errorf("written packet %d differs", i)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("timeout waiting for written packet")
		}
	}
}

func TestMemDeviceReadWritten(t *testing.T) {
	d := NewMemDevice(0, 0)
	if mtu, _ := d.MTU(); mtu != DefaultMTU || d.BatchSize() != 1 {
		t.Fatalf("defaults: MTU %d batch %d", mtu, d.BatchSize())
	}
	pkts := [][]byte{
		append(make([]byte, off), 1, 2, 3),
		append(make([]byte, off), 4, 5),
	}
	if n, err := d.Write(pkts, off); n != 2 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	d.Close()
	// Packets written before Close are still delivered, then ErrClosed.
	bufs, sizes := newBufs(4, 100)
	n, err := d.ReadWritten(bufs, sizes)
	if n != 2 || err != nil || !bytes.Equal(bufs[0][:sizes[0]], []byte{1, 2, 3}) || !bytes.Equal(bufs[1][:sizes[1]], []byte{4, 5}) {
		t.Fatalf("ReadWritten = %d, %v, %v", n, err, bufs[0][:3])
	}
	if _, err := d.ReadWritten(bufs, sizes); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("after drain: %v, want ErrClosed", err)
	}
	if _, err := d.Write(pkts, off); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := d.Inject([]byte{0x45}); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Inject after Close: %v", err)
	}
	var events []tun.Event
	for ev := range d.Events() { // closed by Close, after the initial EventUp
		events = append(events, ev)
	}
	if len(events) != 1 || events[0] != tun.EventUp {
		t.Fatalf("events %v, want [EventUp]", events)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestMemDeviceCloseUnblocks(t *testing.T) {
	d := NewMemDevice(1420, 8)
	bufs, sizes := newBufs(8, 1500)
	readErr := make(chan error, 1)
	go func() {
		_, err := d.Read(bufs, sizes, off)
		readErr <- err
	}()
	// Fill the written queue so that Write blocks too.
	full := make(chan error, 1)
	go func() {
		p := [][]byte{make([]byte, off+20)}
		for {
			if _, err := d.Write(p, off); err != nil {
				full <- err
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	d.Close()
	for _, c := range []chan error{readErr, full} {
		select {
		case err := <-c:
			if !errors.Is(err, os.ErrClosed) {
				t.Errorf("got %v, want os.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock")
		}
	}
}

func TestMemDeviceShortBuffer(t *testing.T) {
	d := NewMemDevice(1420, 4)
	defer d.Close()
	_ = d.Inject(make([]byte, 100))
	_ = d.Inject(make([]byte, 10))
	bufs, sizes := newBufs(2, 50)
	if _, err := d.Read(bufs, sizes, off); !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("Read of a too-large packet: %v, want ErrShortBuffer", err)
	}
	// The oversized packet was dropped; the next one is readable.
	if n, err := d.Read(bufs, sizes, off); n != 1 || err != nil || sizes[0] != 10 {
		t.Fatalf("Read = %d, %v, size %d", n, err, sizes[0])
	}
}

// TestMemDeviceAllocs checks the benchmark path: Inject, Read, Write and
// ReadWritten allocate nothing once the slots exist.
func TestMemDeviceAllocs(t *testing.T) {
	d := NewMemDevice(1420, 32)
	defer d.Close()
	pkt := PacketIPv4(v4a, v4b, ProtoUDP, make([]byte, 1000))
	bufs, sizes := newBufs(32, 1500)
	out, outSizes := newBufs(32, 1500)
	round := func() {
		for range 32 {
			if err := d.Inject(pkt); err != nil {
				t.Fatal(err)
			}
		}
		n, err := d.Read(bufs, sizes, off)
		if err != nil || n != 32 {
			t.Fatalf("Read = %d, %v", n, err)
		}
		for i := range n {
			bufs[i] = bufs[i][:off+sizes[i]]
		}
		if _, err := d.Write(bufs[:n], off); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			bufs[i] = bufs[i][:cap(bufs[i])]
		}
		if m, err := d.ReadWritten(out, outSizes); err != nil || m != 32 {
			t.Fatalf("ReadWritten = %d, %v", m, err)
		}
	}
	round() // allocate the slots
	if a := testing.AllocsPerRun(100, round); a != 0 {
		t.Fatalf("%v allocations per round of 32 packets, want 0", a)
	}
}

func BenchmarkMemDevice(b *testing.B) {
	const batch = 64
	d := NewMemDevice(1420, batch)
	defer d.Close()
	pkt := PacketIPv4(v4a, v4b, ProtoUDP, make([]byte, 1380))
	burst := make([][]byte, batch)
	for i := range burst {
		burst[i] = pkt
	}
	go func() {
		for d.Inject(burst...) == nil {
		}
	}()
	bufs, sizes := newBufs(batch, 1500)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	b.ResetTimer()
	for got := 0; got < b.N; {
		n, err := d.Read(bufs, sizes, off)
		if err != nil {
			b.Fatal(err)
		}
		got += n
	}
}
