// Package e2e runs the x0t binary across Linux network namespaces joined by
// veth pairs: real TUN devices, real UDP, real kernel TCP. The tests need root
// (they skip without it, and fail under CI=true rather than skip).
package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// x0tBin is the binary under test, built once by TestMain.
var x0tBin string

func TestMain(m *testing.M) {
	// The test binary doubles as a small traffic tool run inside namespaces.
	if role := os.Getenv("X0T_E2E_HELPER"); role != "" {
		var err error
		switch role {
		case "probe-send", "probe-recv":
			err = probeHelper(role, os.Args[len(os.Args)-2], os.Args[len(os.Args)-1])
		default:
			err = helper(role, os.Args[len(os.Args)-2], os.Args[len(os.Args)-1])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "x0t-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	x0tBin = filepath.Join(dir, "x0t")
	build := exec.Command("go", "build", "-o", x0tBin, "../cmd/x0t")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building x0t:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Marker is embedded throughout the data the tests push through the tunnel;
// a capture on the underlay must never contain it.
const Marker = "X0T-PLAINTEXT-MARKER-7f3a9c1e"

// helper runs one side of a TCP transfer and prints "<bytes> <sha256>".
//
//	sink ADDR N:   accept one connection on ADDR, read until EOF
//	source ADDR N: connect to ADDR, send N bytes (the marker every 4 KiB)
func helper(role, addr, size string) error {
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil {
		return err
	}
	h := sha256.New()
	var total int64
	switch role {
	case "sink":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		fmt.Println("listening") // the test waits for this line
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		total, err = io.Copy(h, conn)
		if err != nil {
			return err
		}
	case "source":
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(io.MultiWriter(conn, h), 1<<16)
		rng := rand.NewChaCha8([32]byte{7})
		block := make([]byte, 4096)
		for total < n {
			rng.Read(block)
			copy(block, Marker)
			k := min(int64(len(block)), n-total)
			if _, err := w.Write(block[:k]); err != nil {
				return err
			}
			total += k
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		io.Copy(io.Discard, conn)
		conn.Close()
	default:
		return fmt.Errorf("unknown helper role %q", role)
	}
	fmt.Printf("%d %s\n", total, hex.EncodeToString(h.Sum(nil)))
	return nil
}

// mustX0t runs the x0t binary outside any namespace (for ca/cert commands).
func mustX0t(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(x0tBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("x0t %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// probeHelper is the failover probe stream:
//
//	probe-send ADDR DURATION: send a numbered UDP datagram every 5 ms to ADDR
//	probe-recv ADDR DURATION: receive them; print one line per datagram,
//	"<seq> <arrival unix nanoseconds>", so the test can find the gaps
func probeHelper(role, addr, dur string) error {
	d, err := time.ParseDuration(dur)
	if err != nil {
		return err
	}
	switch role {
	case "probe-send":
		conn, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		buf := make([]byte, 64)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		end := time.Now().Add(d)
		for seq := uint64(0); time.Now().Before(end); seq++ {
			binary.BigEndian.PutUint64(buf, seq)
			conn.Write(buf) // errors (no route yet) are gaps, which is what we measure
			<-t.C
		}
		return nil
	default:
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		fmt.Println("listening")
		w := bufio.NewWriter(os.Stdout)
		defer w.Flush()
		buf := make([]byte, 64)
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			pc.SetReadDeadline(end)
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			if n >= 8 {
				fmt.Fprintf(w, "%d %d\n", binary.BigEndian.Uint64(buf), time.Now().UnixNano())
			}
		}
		return nil
	}
}
