package transport

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	wgconn "golang.zx2c4.com/wireguard/conn"
)

const (
	benchBatch = 64
	benchSize  = 1400
)

// BenchmarkUDPLoopback sends batches of 64 datagrams of 1400 bytes over
// IPv4 loopback and reads them back, one batch per op, with GSO and GRO, with
// GSO only (the receiver's kernel splits), and with neither.
func BenchmarkUDPLoopback(b *testing.B) {
	for _, tc := range []struct {
		name     string
		gso, gro bool
	}{
		{"gso+gro", true, true},
		{"gso", true, false},
		{"none", false, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a, r := listen(b, "127.0.0.1:0"), listen(b, "127.0.0.1:0")
			if !tc.gso {
				a.txOffload.Store(false)
			}
			out := outMsgs(r.LocalAddr(), 0, sizes(benchBatch, benchSize)...)
			nbig := 0
			if tc.gro {
				nbig = IdealBatchSize / maxGSOSegments
			}
			in := inMsgs(IdealBatchSize, nbig, 2048)
			roundTrip := func() {
				if err := a.WriteBatch(out); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < benchBatch; {
					n, err := r.ReadBatch(in)
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
			roundTrip() // switches GRO on, if asked for
			a.stats = connStats{}
			r.stats = connStats{}
			b.SetBytes(benchBatch * benchSize)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				roundTrip()
			}
			b.StopTimer()
			sent, recv := a.stats.sendMsgs.Load(), r.stats.recvMsgs.Load()
			b.ReportMetric(float64(b.N*benchBatch)/float64(sent), "dgrams/sent-msg")
			b.ReportMetric(float64(b.N*benchBatch)/float64(recv), "dgrams/recv-msg")
			b.ReportMetric(float64(b.N*benchBatch)/float64(r.stats.recvCalls.Load()), "dgrams/recvmmsg")
		})
	}
}

// BenchmarkUDPLoopbackPipelined is the GSO+GRO case with the reader in its
// own goroutine, so sending and receiving overlap; at most 4 batches are in
// flight, which the socket buffer holds without loss.
func BenchmarkUDPLoopbackPipelined(b *testing.B) {
	const window = 4
	a, r := listen(b, "127.0.0.1:0"), listen(b, "127.0.0.1:0")
	out := outMsgs(r.LocalAddr(), 0, sizes(benchBatch, benchSize)...)
	in := inMsgs(IdealBatchSize, IdealBatchSize/maxGSOSegments, 2048)
	if err := a.WriteBatch(out[:1]); err != nil { // switch GRO on
		b.Fatal(err)
	}
	recvN(b, r, in, 1)

	credits := make(chan struct{}, window)
	stop := make(chan struct{})
	var received atomic.Int64
	total := int64(b.N) * benchBatch
	done := make(chan error, 1)
	go func() {
		var got int64
		for got < total {
			n, err := r.ReadBatch(in)
			if err != nil {
				done <- err
				return
			}
			for range (got+int64(n))/benchBatch - got/benchBatch {
				<-credits
			}
			got += int64(n)
			received.Store(got)
		}
		done <- nil
	}()
	go func() { // watchdog: a lost datagram would leave the sender waiting
		last := int64(-1)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Second):
			}
			got := received.Load()
			if got == last {
				r.Close()
				return
			}
			last = got
		}
	}()
	defer close(stop)
	b.SetBytes(benchBatch * benchSize)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		credits <- struct{}{}
		if err := a.WriteBatch(out); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatalf("receiver: %v (lost datagrams?)", err)
	}
}

// BenchmarkWireGuardStdNetBind is the same workload over wireguard-go's
// conn.StdNetBind, for comparison (its buffers are always 64 KiB).
func BenchmarkWireGuardStdNetBind(b *testing.B) {
	sender, receiver := wgconn.NewStdNetBind(), wgconn.NewStdNetBind()
	if _, _, err := sender.Open(0); err != nil {
		b.Fatal(err)
	}
	defer sender.Close()
	fns, port, err := receiver.Open(0)
	if err != nil {
		b.Fatal(err)
	}
	defer receiver.Close()
	ep, err := sender.ParseEndpoint(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String())
	if err != nil {
		b.Fatal(err)
	}
	out := make([][]byte, benchBatch)
	for i := range out {
		out[i] = payload(make([]byte, benchSize, MaxSegmentBuf), i)
	}
	n := receiver.BatchSize()
	bufs, sizes, eps := make([][]byte, n), make([]int, n), make([]wgconn.Endpoint, n)
	for i := range bufs {
		bufs[i] = make([]byte, MaxSegmentBuf)
	}
	recv := fns[0] // IPv4
	roundTrip := func() {
		for i := range out {
			out[i] = out[i][:benchSize]
		}
		if err := sender.Send(out, ep); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < benchBatch; {
			n, err := recv(bufs, sizes, eps)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
	roundTrip()
	b.SetBytes(benchBatch * benchSize)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		roundTrip()
	}
}
