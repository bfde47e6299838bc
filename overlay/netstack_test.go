package overlay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// glue copies every packet one device reads into the other, as a wire
// between two nodes would, until src is closed.
func glue(t testing.TB, wg *sync.WaitGroup, src, dst Device) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		bufs, sizes := newBufs(src.BatchSize(), 65535)
		for {
			n, err := src.Read(bufs, sizes, off)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					t.Errorf("glue read: %v", err)
				}
				return
			}
			out := make([][]byte, n)
			for i := range n {
				out[i] = bufs[i][:off+sizes[i]]
			}
			if _, err := dst.Write(out, off); err != nil && !errors.Is(err, os.ErrClosed) {
				t.Errorf("glue write: %v", err)
			}
		}
	}()
}

func TestNetstackHTTP(t *testing.T) {
	a4, a6 := netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("fd5e::1")
	b4, b6 := netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("fd5e::2")
	a, err := NewNetstack([]netip.Addr{a4, a6}, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewNetstack([]netip.Addr{b4, b6}, 1280)
	if err != nil {
		t.Fatal(err)
	}
	if mtu, _ := b.Device().MTU(); mtu != 1280 {
		t.Errorf("MTU = %d", mtu)
	}
	var wg sync.WaitGroup
	glue(t, &wg, a.Device(), b.Device())
	glue(t, &wg, b.Device(), a.Device())

	big := bytes.Repeat([]byte("x0tta6bl4 overlay "), 1<<16) // ~1.1 MiB
	mux := http.NewServeMux()
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.RemoteAddr)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write(big)
	})
	srv := &http.Server{Handler: mux}
	for _, addr := range []netip.Addr{b4, b6} {
		ln, err := b.Net().ListenTCPAddrPort(netip.AddrPortFrom(addr, 80))
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
	}
	client := &http.Client{
		Transport: &http.Transport{DialContext: a.Net().DialContext},
		Timeout:   20 * time.Second,
	}
	for _, tc := range []struct {
		url  string
		from netip.Addr
	}{
		{"http://100.64.0.2", a4},
		{"http://[fd5e::2]", a6},
	} {
		resp, err := client.Get(tc.url + "/whoami")
		if err != nil {
			t.Fatalf("GET %s: %v", tc.url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ap, err := netip.ParseAddrPort(string(body))
		if err != nil || ap.Addr() != tc.from {
			t.Errorf("GET %s/whoami = %q, want a request from %v", tc.url, body, tc.from)
		}
		resp, err = client.Get(tc.url + "/big")
		if err != nil {
			t.Fatalf("GET %s/big: %v", tc.url, err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || n != int64(len(big)) || !bytes.Equal(h.Sum(nil), sha(big)) {
			t.Errorf("GET %s/big: %d bytes, %v, checksum match %v", tc.url, n, err, bytes.Equal(h.Sum(nil), sha(big)))
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client.CloseIdleConnections()
	srv.Shutdown(ctx)
	if err := a.Close(); err != nil {
		t.Error(err)
	}
	if err := b.Device().Close(); err != nil { // closing the Device closes the stack
		t.Error(err)
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := a.Device().Write([][]byte{make([]byte, off+20)}, off); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if _, err := a.Net().DialContext(ctx, "tcp", "100.64.0.2:80"); err == nil {
		t.Error("dial after Close succeeded")
	}
	t.Logf("dropped: a=%d b=%d", a.Dropped(), b.Dropped())
}

// TestNetstackUDPAndBatch checks datagrams in both families and that Read
// hands over several queued packets in one call.
func TestNetstackUDPAndBatch(t *testing.T) {
	s, err := NewNetstack([]netip.Addr{v4a, v6a}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, dst := range []netip.AddrPort{netip.AddrPortFrom(v4b, 9), netip.AddrPortFrom(v6b, 9)} {
		c, err := s.Net().DialUDPAddrPort(netip.AddrPort{}, dst)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if _, err := c.Write([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
	}
	waitFor(t, func() bool { return s.out.len() >= 10 })
	bufs, sizes := newBufs(64, 1500)
	n, err := s.Device().Read(bufs, sizes, off)
	if err != nil || n != 10 {
		t.Fatalf("Read = %d, %v; want all 10 queued packets at once", n, err)
	}
	for i := range n {
		pkt := bufs[i][off : off+sizes[i]]
		d, _ := ParseDst(pkt)
		src, _ := ParseSrc(pkt)
		want := v4b
		if i >= 5 {
			want = v6b
		}
		if d != want || (src != v4a && src != v6a) {
			t.Errorf("packet %d: %v -> %v", i, src, d)
		}
	}

	// A UDP packet written into the device reaches a listener in the stack.
	ln, err := s.Net().ListenUDPAddrPort(netip.AddrPortFrom(v6a, 4000))
	if err != nil {
		t.Fatal(err)
	}
	pkt := append(make([]byte, off), PacketUDP(netip.AddrPortFrom(v6b, 5000), netip.AddrPortFrom(v6a, 4000), []byte("in"))...)
	if _, err := s.Device().Write([][]byte{pkt}, off); err != nil {
		t.Fatal(err)
	}
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	m, from, err := ln.ReadFrom(buf)
	if err != nil || string(buf[:m]) != "in" || from.String() != "[fd5e:1:2::2]:5000" {
		t.Fatalf("ReadFrom = %q from %v, %v", buf[:m], from, err)
	}
}

func TestNetstackInvalid(t *testing.T) {
	for _, tc := range []struct {
		addrs []netip.Addr
		mtu   int
	}{
		{nil, 0},
		{[]netip.Addr{{}}, 0},
		{[]netip.Addr{v6a}, 1200},
		{[]netip.Addr{v4a}, 70000},
		{[]netip.Addr{netip.MustParseAddr("::ffff:1.2.3.4")}, 0},
	} {
		if s, err := NewNetstack(tc.addrs, tc.mtu); err == nil {
			s.Close()
			t.Errorf("NewNetstack(%v, %d) succeeded", tc.addrs, tc.mtu)
		}
	}
	// IPv4 alone may use a small MTU.
	s, err := NewNetstack([]netip.Addr{v4a}, 576)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func sha(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}
