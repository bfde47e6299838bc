package session

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/x0tta6bl4/x0t/wire"
)

// relayed builds a relayed packet: payload sealed end to end with e, wrapped
// for a link with l, hop limit hop, destination dst.
func relayed(t testing.TB, e, l *Keypair, payload []byte, hop uint8, dst [16]byte) []byte {
	t.Helper()
	inner := seal(t, e, payload)
	pkt := make([]byte, wire.RelayHeaderSize+len(inner))
	copy(pkt[wire.RelayHeaderSize:], inner)
	wire.PutForwardHeader(pkt[wire.DataHeaderSize:], hop, dst)
	var ad RelayScratch
	if err := l.SealRelay(pkt, &ad, t0); err != nil {
		t.Fatal(err)
	}
	return pkt
}

func openRelay(kp *Keypair, pkt []byte) ([]byte, error) {
	recv, counter, err := wire.ParseRelayHeader(pkt)
	if err != nil {
		return nil, err
	}
	if recv != kp.LocalIndex {
		return nil, errors.New("wrong receiver")
	}
	pkt = bytes.Clone(pkt)
	var ad RelayScratch
	return pkt, kp.OpenRelay(pkt, counter, &ad, t0)
}

// TestRelayHop carries a packet over two links, as a relay does, and opens it
// end to end at the destination.
func TestRelayHop(t *testing.T) {
	for _, suite := range []uint8{wire.SuiteAES256GCM, wire.SuiteChaCha20Poly1305} {
		e1, e2 := pair(t, suite) // source and destination
		ab, ba := pair(t, suite) // link source–relay
		bc, cb := pair(t, suite) // link relay–destination
		bc.LocalIndex, cb.RemoteIndex = 30, 30
		dst := [16]byte{0xde, 0xad, 0xbe, 0xef, 15: 0x77}
		msg := []byte("marker: x0t-plaintext-never-on-the-wire")
		pkt := relayed(t, e1, ab, msg, 5, dst)
		if bytes.Contains(pkt, msg[:8]) || bytes.Contains(pkt, dst[:4]) {
			t.Fatal("payload or destination visible on the first link")
		}
		got, err := openRelay(ba, pkt)
		if err != nil {
			t.Fatalf("relay: %v", err)
		}
		hop, d, err := wire.ParseForwardHeader(got[wire.DataHeaderSize : wire.DataHeaderSize+wire.ForwardHeaderSize])
		if err != nil || hop != 5 || d != dst {
			t.Fatalf("forwarding header: hop %d dst %x err %v", hop, d, err)
		}
		got[wire.DataHeaderSize+1] = hop - 1 // as a relay does, then seal for the next link
		var ad RelayScratch
		if err := bc.SealRelay(got, &ad, t0); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(got, dst[:4]) {
			t.Fatal("destination visible on the second link")
		}
		last, err := openRelay(cb, got)
		if err != nil {
			t.Fatalf("destination's link: %v", err)
		}
		if last[wire.DataHeaderSize+1] != 4 {
			t.Fatal("hop limit not carried")
		}
		pt, err := open(e2, last[wire.RelayHeaderSize:])
		if err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("end to end: %q %v", pt, err)
		}
	}
}

// TestRelayRejects: the link tag covers the header, the forwarding header and
// the end-to-end packet's header, tag and length; a replay is refused; the
// end-to-end ciphertext is left to the destination, which refuses a change.
func TestRelayRejects(t *testing.T) {
	e1, e2 := pair(t, wire.SuiteAES256GCM)
	ab, ba := pair(t, wire.SuiteAES256GCM)
	pkt := relayed(t, e1, ab, bytes.Repeat([]byte{0x45}, 100), 3, [16]byte{1})
	innerTag := len(pkt) - wire.TagSize
	covered := []int{0, 1, 4, 8, 15, 16, 20, 35, 36, 51, // link layer
		wire.RelayHeaderSize + 4, wire.RelayHeaderSize + 8, wire.RelayHeaderSize + 15, // e2e header
		innerTag, len(pkt) - 1} // e2e tag
	for _, i := range covered {
		bad := bytes.Clone(pkt)
		bad[i] ^= 0x01
		if _, err := openRelay(ba, bad); err == nil {
			t.Errorf("byte %d changed and the link layer still opens", i)
		}
	}
	// A changed length (one byte cut from the ciphertext, the tag kept).
	cut := append(bytes.Clone(pkt[:innerTag-1]), pkt[innerTag:]...)
	if _, err := openRelay(ba, cut); !errors.Is(err, ErrAuth) {
		t.Errorf("shortened packet: %v, want ErrAuth", err)
	}
	// As a data packet (type byte 4) it authenticates under neither layout.
	asData := bytes.Clone(pkt)
	asData[0] = wire.TypeData
	if _, err := open(ba, asData); err == nil {
		t.Error("relayed packet opened as a data packet")
	}
	// A changed end-to-end ciphertext passes the link (it is not the link's)
	// and fails at the destination.
	bad := bytes.Clone(pkt)
	bad[wire.RelayHeaderSize+wire.DataHeaderSize+10] ^= 0x80
	got, err := openRelay(ba, bad)
	if err != nil {
		t.Fatalf("link layer of a packet with changed e2e ciphertext: %v", err)
	}
	if _, err := open(e2, got[wire.RelayHeaderSize:]); !errors.Is(err, ErrAuth) {
		t.Fatalf("changed e2e ciphertext at the destination: %v, want ErrAuth", err)
	}
	// The genuine packet has the same counter: it is now a replay.
	if _, err := openRelay(ba, pkt); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v, want ErrReplay", err)
	}
}

func TestRelayDoesNotAllocate(t *testing.T) {
	e1, _ := pair(t, wire.SuiteAES256GCM)
	ab, ba := pair(t, wire.SuiteAES256GCM)
	pkt := relayed(t, e1, ab, make([]byte, 1400), 3, [16]byte{1})
	var ad RelayScratch
	allocs := testing.AllocsPerRun(1000, func() {
		if err := ab.SealRelay(pkt, &ad, t0); err != nil {
			t.Fatal(err)
		}
		_, counter, _ := wire.ParseRelayHeader(pkt)
		if err := ba.OpenRelay(pkt, counter, &ad, t0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("relay seal+open allocate %.1f times per packet", allocs)
	}
}

func FuzzOpenRelay(f *testing.F) {
	e1, _ := pair(f, wire.SuiteAES256GCM)
	ab, _ := pair(f, wire.SuiteAES256GCM)
	f.Add(relayed(f, e1, ab, []byte("hello"), 3, [16]byte{1}))
	f.Add(make([]byte, wire.RelayHeaderSize+wire.DataOverhead))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		_, ba := pair(t, wire.SuiteAES256GCM)
		_, counter, err := wire.ParseRelayHeader(pkt)
		if err != nil {
			return
		}
		var ad RelayScratch
		// Random bytes never authenticate; a valid seed opens exactly once.
		if err := ba.OpenRelay(bytes.Clone(pkt), counter, &ad, t0); err == nil {
			if err := ba.OpenRelay(bytes.Clone(pkt), counter, &ad, t0); err == nil {
				t.Fatal("same packet opened twice")
			}
		}
	})
}

// TestRelayVector checks the relayed-packet vector printed in
// docs/protocol.md: the link key, the end-to-end packet (the handshake
// vectors' data packet) and the forwarding header give exactly that packet.
func TestRelayVector(t *testing.T) {
	doc := docVectors(t, "relay-vector")
	key := mustHex(t, doc["link_key"])
	var k [32]byte
	copy(k[:], key)
	l, err := NewKeypair(k, k, wire.SuiteAES256GCM, 1, 0x01020304, true, t0)
	if err != nil {
		t.Fatal(err)
	}
	inner := mustHex(t, doc["e2e_packet"])
	pkt := make([]byte, wire.RelayHeaderSize+len(inner))
	copy(pkt[wire.RelayHeaderSize:], inner)
	copy(pkt[wire.DataHeaderSize:], mustHex(t, doc["forward_header"]))
	var ad RelayScratch
	if err := l.SealRelay(pkt, &ad, t0); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(pkt); got != doc["relay_packet"] {
		t.Fatalf("docs/protocol.md relay_packet = %s, implementation computes %s", doc["relay_packet"], got)
	}
}

// docVectors reads "name = hex" lines of the ```block fence in
// docs/protocol.md; a value continued on the next line is concatenated.
func docVectors(t *testing.T, block string) map[string]string {
	t.Helper()
	f, err := os.Open("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	in, last := false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "```"+block:
			in = true
		case in && line == "```":
			return out
		case in && strings.Contains(line, " = "):
			k, v, _ := strings.Cut(line, " = ")
			out[k], last = v, k
		case in && last != "":
			out[last] += line
		}
	}
	t.Fatalf("docs/protocol.md has no ```%s block", block)
	return nil
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(s) == 0 {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}
