package wire

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"time"
)

// Fragmentation carries handshake messages (an initiation is about 9 KiB, a
// response 2.2 KiB) over paths whose MTU is 1280: every fragment datagram is at
// most FragmentHeaderSize+MaxChunk = 1152 bytes. With IPv6 (40) and UDP (8)
// headers that is 1200, and it still fits 1280 when a relay wraps it for the
// next hop (a 20-byte forwarding header and a 32-byte link session overhead).
const (
	FragmentHeaderSize = 12
	MaxChunk           = 1140
	MaxFragments       = 16
	MaxMessageSize     = MaxFragments * MaxChunk // 18240
)

// Fragment is one decoded fragment. Chunk aliases the packet.
type Fragment struct {
	Index  uint8
	Count  uint8
	MsgID  uint32
	MsgLen uint16
	Chunk  []byte
}

// Fragments splits msg into fragment datagrams, each appended to a fresh slice
// from the returned backing array. msgID should be random per message so that
// fragments of different messages never mix.
func Fragments(msg []byte, msgID uint32) ([][]byte, error) {
	if len(msg) == 0 || len(msg) > MaxMessageSize {
		return nil, fmt.Errorf("wire: can not fragment a %d-byte message", len(msg))
	}
	count := (len(msg) + MaxChunk - 1) / MaxChunk
	out := make([][]byte, 0, count)
	for i := range count {
		chunk := msg[i*MaxChunk : min((i+1)*MaxChunk, len(msg))]
		b := make([]byte, FragmentHeaderSize, FragmentHeaderSize+len(chunk))
		b[0] = TypeFragment
		b[1] = byte(i)
		b[2] = byte(count)
		binary.LittleEndian.PutUint32(b[4:8], msgID)
		binary.LittleEndian.PutUint16(b[8:10], uint16(len(msg)))
		out = append(out, append(b, chunk...))
	}
	return out, nil
}

// ParseFragment decodes and checks one fragment: its index, count, and chunk
// length must agree with the declared message length.
func ParseFragment(b []byte) (Fragment, error) {
	if len(b) < FragmentHeaderSize+1 {
		return Fragment{}, ErrShort
	}
	if b[0] != TypeFragment {
		return Fragment{}, ErrType
	}
	if b[3]|b[10]|b[11] != 0 {
		return Fragment{}, ErrReserved
	}
	f := Fragment{
		Index:  b[1],
		Count:  b[2],
		MsgID:  binary.LittleEndian.Uint32(b[4:8]),
		MsgLen: binary.LittleEndian.Uint16(b[8:10]),
		Chunk:  b[FragmentHeaderSize:],
	}
	n := int(f.MsgLen)
	if n == 0 || n > MaxMessageSize {
		return Fragment{}, fmt.Errorf("%w: fragment of a %d-byte message", ErrMalformed, n)
	}
	if int(f.Count) != (n+MaxChunk-1)/MaxChunk || f.Index >= f.Count {
		return Fragment{}, fmt.Errorf("%w: fragment %d of %d for %d bytes", ErrMalformed, f.Index, f.Count, n)
	}
	want := MaxChunk
	if int(f.Index) == int(f.Count)-1 {
		want = n - (int(f.Count)-1)*MaxChunk
	}
	if len(f.Chunk) != want {
		return Fragment{}, fmt.Errorf("%w: fragment chunk of %d bytes, want %d", ErrMalformed, len(f.Chunk), want)
	}
	return f, nil
}

// ReassemblyLimits bound the memory an attacker can make a node hold in partial
// messages.
type ReassemblyLimits struct {
	MaxPending   int           // partial messages held at once (all sources)
	MaxPerSource int           // partial messages held per source address
	Timeout      time.Duration // a partial message is dropped after this
}

// DefaultReassemblyLimits hold at most 256 × 19 KiB ≈ 5 MiB.
var DefaultReassemblyLimits = ReassemblyLimits{MaxPending: 256, MaxPerSource: 4, Timeout: 5 * time.Second}

type reassemblyKey struct {
	src netip.AddrPort
	id  uint32
}

type partial struct {
	buf     []byte
	have    uint16 // bitmap of received fragments
	count   uint8
	started time.Time
}

// recentDone is how many completed messages the reassembler remembers, so that a
// late duplicate fragment does not open a partial message that can never finish.
const recentDone = 64

// Reassembler rebuilds fragmented messages. It is not safe for concurrent use.
type Reassembler struct {
	limits   ReassemblyLimits
	pending  map[reassemblyKey]*partial
	perSrc   map[netip.AddrPort]int
	done     [recentDone]reassemblyKey
	doneNext int
	Dropped  uint64 // fragments dropped: inconsistent, over limits, or expired
	Complete uint64 // messages reassembled
}

// NewReassembler returns a reassembler with the given limits.
func NewReassembler(l ReassemblyLimits) *Reassembler {
	return &Reassembler{limits: l, pending: map[reassemblyKey]*partial{}, perSrc: map[netip.AddrPort]int{}}
}

// Add takes one fragment from src and returns the whole message once all its
// fragments have arrived (the caller owns the returned slice). Duplicates are
// ignored; a fragment that disagrees with earlier ones about the message's
// length is dropped.
func (r *Reassembler) Add(src netip.AddrPort, f Fragment, now time.Time) []byte {
	if f.Count == 1 {
		r.Complete++
		return append([]byte(nil), f.Chunk...)
	}
	k := reassemblyKey{src, f.MsgID}
	for _, d := range r.done {
		if d == k {
			return nil // a duplicate of a message already delivered
		}
	}
	p := r.pending[k]
	if p != nil && now.Sub(p.started) > r.limits.Timeout {
		r.remove(k)
		p = nil
	}
	if p == nil {
		if len(r.pending) >= r.limits.MaxPending {
			r.Expire(now)
		}
		if len(r.pending) >= r.limits.MaxPending || r.perSrc[src] >= r.limits.MaxPerSource {
			r.Dropped++
			return nil
		}
		p = &partial{buf: make([]byte, f.MsgLen), count: f.Count, started: now}
		r.pending[k] = p
		r.perSrc[src]++
	}
	if int(f.MsgLen) != len(p.buf) || f.Count != p.count {
		r.Dropped++
		return nil
	}
	bit := uint16(1) << f.Index
	if p.have&bit != 0 {
		return nil
	}
	p.have |= bit
	copy(p.buf[int(f.Index)*MaxChunk:], f.Chunk)
	if p.have != uint16(0xFFFF)>>(16-p.count) {
		return nil
	}
	r.remove(k)
	r.done[r.doneNext] = k
	r.doneNext = (r.doneNext + 1) % recentDone
	r.Complete++
	return p.buf
}

// Expire drops partial messages older than the timeout.
func (r *Reassembler) Expire(now time.Time) {
	for k, p := range r.pending {
		if now.Sub(p.started) > r.limits.Timeout {
			r.Dropped += uint64(bits.OnesCount16(p.have))
			r.remove(k)
		}
	}
}

// Pending returns the number of partial messages held.
func (r *Reassembler) Pending() int { return len(r.pending) }

func (r *Reassembler) remove(k reassemblyKey) {
	delete(r.pending, k)
	if r.perSrc[k.src]--; r.perSrc[k.src] <= 0 {
		delete(r.perSrc, k.src)
	}
}
