package wire

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func TestDataHeader(t *testing.T) {
	b := make([]byte, DataOverhead)
	PutDataHeader(b, 0xdeadbeef, 1<<40+7)
	idx, ctr, err := ParseDataHeader(b)
	if err != nil || idx != 0xdeadbeef || ctr != 1<<40+7 {
		t.Fatalf("got %x %d %v", idx, ctr, err)
	}
	b[2] = 1
	if _, _, err := ParseDataHeader(b); !errors.Is(err, ErrReserved) {
		t.Fatalf("reserved bits: %v", err)
	}
	if _, _, err := ParseDataHeader(b[:DataOverhead-1]); !errors.Is(err, ErrShort) {
		t.Fatalf("short: %v", err)
	}
}

func randMsg(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestFragmentRoundTrip(t *testing.T) {
	for _, size := range []int{1, MaxChunk - 1, MaxChunk, MaxChunk + 1, 9061, MaxMessageSize} {
		msg := randMsg(size)
		frags, err := Fragments(msg, 99)
		if err != nil {
			t.Fatal(err)
		}
		r := NewReassembler(DefaultReassemblyLimits)
		src := netip.MustParseAddrPort("192.0.2.1:1")
		var got []byte
		// Deliver in a scrambled order with a duplicate.
		order := append([]int{}, len(frags)-1)
		for i := range len(frags) - 1 {
			order = append(order, i)
		}
		order = append(order, 0)
		for _, i := range order {
			if len(frags[i]) > FragmentHeaderSize+MaxChunk {
				t.Fatalf("fragment of %d bytes", len(frags[i]))
			}
			f, err := ParseFragment(frags[i])
			if err != nil {
				t.Fatal(err)
			}
			if m := r.Add(src, f, t0); m != nil {
				got = m
			}
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("size %d: reassembly differs", size)
		}
		if r.Pending() != 0 {
			t.Fatalf("size %d: %d partial messages left", size, r.Pending())
		}
	}
	if _, err := Fragments(randMsg(MaxMessageSize+1), 1); err == nil {
		t.Fatal("oversized message fragmented")
	}
}

func TestFragmentRejections(t *testing.T) {
	frags, _ := Fragments(randMsg(3000), 5)
	mutate := func(i int, fn func(b []byte)) []byte {
		b := bytes.Clone(frags[i])
		fn(b)
		return b
	}
	bad := map[string][]byte{
		"count mismatch":  mutate(0, func(b []byte) { b[2] = 4 }),
		"index too large": mutate(0, func(b []byte) { b[1] = 3 }),
		"reserved":        mutate(0, func(b []byte) { b[3] = 1 }),
		"short chunk":     frags[0][:len(frags[0])-1],
		"last too long":   append(bytes.Clone(frags[2]), 0),
		"zero length":     mutate(0, func(b []byte) { b[8], b[9] = 0, 0 }),
		"header only":     frags[0][:FragmentHeaderSize],
	}
	for name, b := range bad {
		if _, err := ParseFragment(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestReassemblyLimits(t *testing.T) {
	r := NewReassembler(ReassemblyLimits{MaxPending: 4, MaxPerSource: 2, Timeout: time.Second})
	src := netip.MustParseAddrPort("192.0.2.1:1")
	first := func(id uint32, from netip.AddrPort, now time.Time) {
		frags, _ := Fragments(randMsg(2500), id)
		f, _ := ParseFragment(frags[0])
		r.Add(from, f, now)
	}
	first(1, src, t0)
	first(2, src, t0)
	first(3, src, t0) // over the per-source limit
	if r.Pending() != 2 || r.Dropped != 1 {
		t.Fatalf("per-source limit: pending %d dropped %d", r.Pending(), r.Dropped)
	}
	first(4, netip.MustParseAddrPort("192.0.2.2:1"), t0)
	first(5, netip.MustParseAddrPort("192.0.2.2:1"), t0)
	first(6, netip.MustParseAddrPort("192.0.2.3:1"), t0) // over the global limit
	if r.Pending() != 4 || r.Dropped != 2 {
		t.Fatalf("global limit: pending %d dropped %d", r.Pending(), r.Dropped)
	}
	// After the timeout, room is made again.
	first(7, netip.MustParseAddrPort("192.0.2.3:1"), t0.Add(2*time.Second))
	if r.Pending() != 1 {
		t.Fatalf("expiry: pending %d", r.Pending())
	}
	// A fragment claiming another length for a pending message is dropped.
	frags, _ := Fragments(randMsg(2500), 7)
	other, _ := Fragments(randMsg(3700), 7)
	f, _ := ParseFragment(other[1])
	before := r.Dropped
	if r.Add(netip.MustParseAddrPort("192.0.2.3:1"), f, t0.Add(2*time.Second)) != nil || r.Dropped != before+1 {
		t.Fatal("inconsistent fragment accepted")
	}
	_ = frags
}

func TestHandshakeMessageDecoders(t *testing.T) {
	m := &Initiation{Sender: 7, Suite: SuiteAES256GCM,
		Ephemeral: randMsg(X25519Size), KEMKey: randMsg(MLKEMKeySize), StaticCt: randMsg(MLKEMCtSize),
		EncCert: randMsg(6000 + TagSize), EncTime: randMsg(TimestampSize + TagSize),
		MAC1: randMsg(MACSize), MAC2: randMsg(MACSize)}
	b := AppendInitiation(nil, m)
	got, err := ParseInitiation(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sender != 7 || !bytes.Equal(got.EncCert, m.EncCert) || !bytes.Equal(got.MAC2, m.MAC2) || !bytes.Equal(got.StaticCt, m.StaticCt) {
		t.Fatal("initiation fields differ after a round trip")
	}
	if off1, off2, ok := MACOffsets(b); !ok || off2-off1 != MACSize || off2 != len(b)-MACSize {
		t.Fatal("MAC offsets")
	}
	r := &Response{Sender: 1, Receiver: 2, Ephemeral: randMsg(X25519Size), EphCt: randMsg(MLKEMCtSize),
		StaticCt: randMsg(MLKEMCtSize), EncEmpty: randMsg(TagSize), MAC1: randMsg(MACSize), MAC2: randMsg(MACSize)}
	rb := AppendResponse(nil, r)
	if len(rb) != ResponseSize {
		t.Fatalf("response is %d bytes", len(rb))
	}
	gr, err := ParseResponse(rb)
	if err != nil || gr.Receiver != 2 || !bytes.Equal(gr.EphCt, r.EphCt) {
		t.Fatalf("response round trip: %v", err)
	}
	if _, err := ParseResponse(rb[:len(rb)-1]); err == nil {
		t.Fatal("short response accepted")
	}
	c := AppendCookieReply(nil, &CookieReply{Receiver: 9, Nonce: randMsg(CookieNonceLen), EncCookie: randMsg(CookieSize + TagSize)})
	if gc, err := ParseCookieReply(c); err != nil || gc.Receiver != 9 {
		t.Fatalf("cookie reply round trip: %v", err)
	}
}

// FuzzDecoders feeds arbitrary datagrams to every decoder of this package. None
// may panic, and whatever decodes must re-encode to the same bytes.
func FuzzDecoders(f *testing.F) {
	frags, _ := Fragments(randMsg(2500), 1)
	for _, fr := range frags {
		f.Add(fr)
	}
	hdr := make([]byte, DataOverhead)
	PutDataHeader(hdr, 1, 2)
	f.Add(hdr)
	f.Add(AppendResponse(nil, &Response{Ephemeral: make([]byte, 32), EphCt: make([]byte, MLKEMCtSize),
		StaticCt: make([]byte, MLKEMCtSize), EncEmpty: make([]byte, 16), MAC1: make([]byte, 16), MAC2: make([]byte, 16)}))
	f.Add(AppendCookieReply(nil, &CookieReply{Nonce: make([]byte, 24), EncCookie: make([]byte, 32)}))
	f.Add([]byte{TypeInitiation, 0, 0, 0})
	relay := make([]byte, RelayHeaderSize+DataOverhead)
	PutRelayHeader(relay, 1, 2)
	PutDataHeader(relay[RelayHeaderSize:], 3, 4)
	f.Add(relay)
	f.Add(relay[RelayHeaderSize-DeliverHeaderSize:])
	f.Fuzz(func(t *testing.T, b []byte) {
		if inner, err := ParseDeliver(b); err == nil {
			if b[0] != TypeDeliver || len(inner) != len(b)-DeliverHeaderSize || len(inner) < DataOverhead || inner[0] != TypeData {
				t.Fatal("delivered packet accepted with a wrong type or length")
			}
			h := make([]byte, DeliverHeaderSize)
			PutDeliverHeader(h)
			if !bytes.Equal(h, b[:DeliverHeaderSize]) {
				t.Fatal("delivered packet header does not re-encode")
			}
		}
		if _, _, err := ParseDataHeader(b); err == nil && b[0] != TypeData {
			t.Fatal("data header of another type accepted")
		}
		if _, _, err := ParseRelayHeader(b); err == nil {
			if b[0] != TypeRelay || len(b) < RelayHeaderSize+DataOverhead || b[RelayHeaderSize] != TypeData {
				t.Fatal("relayed packet accepted with a wrong type or length")
			}
			ad := make([]byte, RelayADSize)
			RelayAD(ad, b) // must not panic on anything ParseRelayHeader accepts
		}
		if len(b) >= ForwardHeaderSize {
			if hop, dst, err := ParseForwardHeader(b[:ForwardHeaderSize]); err == nil {
				h := make([]byte, ForwardHeaderSize)
				PutForwardHeader(h, hop, dst)
				if !bytes.Equal(h, b[:ForwardHeaderSize]) {
					t.Fatal("forwarding header does not re-encode")
				}
			}
		}
		if m, err := ParseInitiation(b); err == nil {
			if !bytes.Equal(AppendInitiation(nil, m), b) {
				t.Fatal("initiation does not re-encode")
			}
		}
		if m, err := ParseResponse(b); err == nil {
			if !bytes.Equal(AppendResponse(nil, m), b) {
				t.Fatal("response does not re-encode")
			}
		}
		if m, err := ParseCookieReply(b); err == nil {
			if !bytes.Equal(AppendCookieReply(nil, m), b) {
				t.Fatal("cookie reply does not re-encode")
			}
		}
		if fr, err := ParseFragment(b); err == nil {
			r := NewReassembler(DefaultReassemblyLimits)
			msg := r.Add(netip.MustParseAddrPort("192.0.2.1:1"), fr, t0)
			if fr.Count == 1 && !bytes.Equal(msg, fr.Chunk) {
				t.Fatal("single-fragment message not returned")
			}
			if int(fr.MsgLen) > MaxMessageSize || len(fr.Chunk) > MaxChunk {
				t.Fatal("fragment beyond limits accepted")
			}
		}
	})
}

func BenchmarkParseDataHeader(b *testing.B) {
	hdr := make([]byte, 1432)
	PutDataHeader(hdr, 1, 2)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseDataHeader(hdr); err != nil {
			b.Fatal(err)
		}
	}
}

func TestForwardHeader(t *testing.T) {
	var dst [16]byte
	dst[0], dst[15] = 0xaa, 0x55
	b := make([]byte, ForwardHeaderSize+DataOverhead)
	PutForwardHeader(b, 7, dst)
	b[ForwardHeaderSize] = TypeFragment
	hop, got, inner, err := ParseForward(b)
	if err != nil || hop != 7 || got != dst || len(inner) != DataOverhead {
		t.Fatalf("round trip: %d %x %d %v", hop, got, len(inner), err)
	}
	b[ForwardHeaderSize] = TypeInitiation // whole initiations never travel unfragmented in the mesh
	if _, _, _, err := ParseForward(b); err == nil {
		t.Fatal("forwarded initiation accepted")
	}
	PutDataHeader(b[ForwardHeaderSize:], 1, 2) // data travels as relayed packets (type 6)
	if _, _, _, err := ParseForward(b); err == nil {
		t.Fatal("forwarded data packet accepted")
	}
	if IsIPPacket([]byte{LinkForward}) || !IsIPPacket([]byte{0x45}) || !IsIPPacket([]byte{0x60}) || IsIPPacket(nil) {
		t.Fatal("IsIPPacket")
	}
}

func TestDeliverHeader(t *testing.T) {
	b := make([]byte, DeliverHeaderSize+DataOverhead)
	PutDataHeader(b[DeliverHeaderSize:], 9, 1)
	PutDeliverHeader(b)
	if inner, err := ParseDeliver(b); err != nil || &inner[0] != &b[DeliverHeaderSize] || len(inner) != DataOverhead {
		t.Fatalf("ParseDeliver = %d bytes, %v", len(inner), err)
	}
	if _, err := ParseDeliver(b[:len(b)-1]); !errors.Is(err, ErrShort) {
		t.Fatalf("short: %v", err)
	}
	b[DeliverHeaderSize] = TypeRelay // only data is delivered this way
	if _, err := ParseDeliver(b); !errors.Is(err, ErrType) {
		t.Fatalf("inner type: %v", err)
	}
	b[DeliverHeaderSize], b[3] = TypeData, 1
	if _, err := ParseDeliver(b); !errors.Is(err, ErrReserved) {
		t.Fatalf("reserved: %v", err)
	}
	b[3], b[0] = 0, TypeData
	if _, err := ParseDeliver(b); !errors.Is(err, ErrType) {
		t.Fatalf("outer type: %v", err)
	}
}

func TestRelayHeader(t *testing.T) {
	b := make([]byte, RelayHeaderSize+DataOverhead)
	PutRelayHeader(b, 0x01020304, 7)
	PutDataHeader(b[RelayHeaderSize:], 9, 1)
	if r, c, err := ParseRelayHeader(b); err != nil || r != 0x01020304 || c != 7 {
		t.Fatalf("round trip: %x %d %v", r, c, err)
	}
	if _, _, err := ParseRelayHeader(b[:len(b)-1]); !errors.Is(err, ErrShort) {
		t.Fatalf("short: %v", err)
	}
	b[RelayHeaderSize] = TypeFragment // only data is relayed this way
	if _, _, err := ParseRelayHeader(b); !errors.Is(err, ErrType) {
		t.Fatalf("inner fragment: %v", err)
	}
	b[RelayHeaderSize], b[2] = TypeData, 1
	if _, _, err := ParseRelayHeader(b); !errors.Is(err, ErrReserved) {
		t.Fatalf("reserved: %v", err)
	}
	if _, _, err := ParseForwardHeader(make([]byte, ForwardHeaderSize-1)); !errors.Is(err, ErrShort) {
		t.Fatalf("short forwarding header: %v", err)
	}
}

func FuzzParseForward(f *testing.F) {
	b := make([]byte, ForwardHeaderSize+DataOverhead)
	PutForwardHeader(b, 3, [16]byte{1})
	b[ForwardHeaderSize] = TypeFragment
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, _, inner, err := ParseForward(b); err == nil && len(inner) == 0 {
			t.Fatal("empty inner datagram accepted")
		}
	})
}
