package route

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/x0tta6bl4/x0t/identity"
)

// Message types: the first byte of every routing message. They do not collide
// with linkmon's (0x20, 0x21), so the data plane can demultiplex control
// messages on one byte. The layouts are specified in docs/routing.md.
const (
	TypeLSA     = 0x10
	TypeSummary = 0x11
	TypeAck     = 0x12
)

// Version is the routing protocol version carried in byte 1 of every message.
const Version = 1

// SignLabel is the hybrid-signature context label of a link-state advert, so an
// advert signature is never valid for any other signed object.
const SignLabel = "x0t-lsa-v1"

// Limits of the encodings.
const (
	// MaxLinks bounds the links in one advert (8,523 bytes at most). A node
	// with more live links advertises the MaxLinks with the lowest metrics.
	MaxLinks = 256
	// MaxMetric is the largest link metric (about 16.7 s of RTT): path
	// metrics then fit 64-bit sums with room to spare and 32-bit for any path
	// of up to 255 hops.
	MaxMetric = 1<<24 - 1
	// MaxEntries bounds the (origin, seq) entries in one summary or ack, so
	// either fits a single 1,200-byte fragment.
	MaxEntries = 48

	lsaHeaderSize     = 30
	lsaLinkSize       = identity.NodeIDSize + 4
	entrySize         = identity.NodeIDSize + 8
	summaryHeaderSize = 38
	ackHeaderSize     = 6
)

// Decoding errors; Stats counts rejections by them.
var (
	ErrShort     = errors.New("route: message too short")
	ErrType      = errors.New("route: unknown message type")
	ErrVersion   = errors.New("route: unsupported version")
	ErrReserved  = errors.New("route: reserved field not zero")
	ErrMalformed = errors.New("route: malformed message")
)

// Link is one advertised adjacency: the neighbour and the origin's metric
// towards it.
type Link struct {
	Neighbour identity.NodeID
	Metric    uint32
}

// LSA is a decoded link-state advert (without its signature).
type LSA struct {
	Origin identity.NodeID
	Seq    uint64
	Links  []Link
}

// lsaView reads a strictly validated advert in place, so the link-state
// database keeps each advert once, as received, with no decoded copy.
type lsaView []byte

func (v lsaView) origin() (id identity.NodeID) { copy(id[:], v[4:20]); return }
func (v lsaView) seq() uint64                  { return binary.LittleEndian.Uint64(v[20:28]) }
func (v lsaView) nlinks() int                  { return int(binary.LittleEndian.Uint16(v[28:30])) }
func (v lsaView) bodyLen() int                 { return lsaHeaderSize + v.nlinks()*lsaLinkSize }
func (v lsaView) body() []byte                 { return v[:v.bodyLen()] }
func (v lsaView) sig() []byte                  { return v[v.bodyLen():] }
func (v lsaView) links() []byte                { return v[lsaHeaderSize:v.bodyLen()] }

func (v lsaView) link(i int) (nbr []byte, metric uint32) {
	o := lsaHeaderSize + i*lsaLinkSize
	return v[o : o+16], binary.LittleEndian.Uint32(v[o+16 : o+20])
}

// hasLink reports whether the advert lists nbr, by binary search: links are
// sorted, which the decoder enforces.
func (v lsaView) hasLink(nbr *identity.NodeID) bool {
	lo, hi := 0, v.nlinks()
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		id, _ := v.link(m)
		switch c := bytes.Compare(id, nbr[:]); {
		case c == 0:
			return true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return false
}

// EncodeLSABody returns the signed part of an advert. Links must be sorted by
// neighbour, unique, not the origin, with metrics in [1, MaxMetric].
func EncodeLSABody(a LSA) ([]byte, error) {
	if len(a.Links) > MaxLinks {
		return nil, fmt.Errorf("route: %d links, at most %d: %w", len(a.Links), MaxLinks, ErrMalformed)
	}
	b := make([]byte, lsaHeaderSize+len(a.Links)*lsaLinkSize, lsaHeaderSize+len(a.Links)*lsaLinkSize+identity.SignatureSize)
	b[0], b[1] = TypeLSA, Version
	copy(b[4:20], a.Origin[:])
	binary.LittleEndian.PutUint64(b[20:28], a.Seq)
	binary.LittleEndian.PutUint16(b[28:30], uint16(len(a.Links)))
	for i, l := range a.Links {
		o := lsaHeaderSize + i*lsaLinkSize
		copy(b[o:o+16], l.Neighbour[:])
		binary.LittleEndian.PutUint32(b[o+16:o+20], l.Metric)
	}
	if err := checkLinks(lsaView(b), a.Origin); err != nil {
		return nil, err
	}
	return b, nil
}

// DecodeLSA strictly decodes an advert without verifying its signature: exact
// length, type, version, zero reserved bytes, links sorted and unique, no link
// to the origin itself, metrics in range. One advert has one encoding.
func DecodeLSA(b []byte) (LSA, error) {
	v, err := parseLSA(b)
	if err != nil {
		return LSA{}, err
	}
	a := LSA{Origin: v.origin(), Seq: v.seq(), Links: make([]Link, v.nlinks())}
	for i := range a.Links {
		id, m := v.link(i)
		copy(a.Links[i].Neighbour[:], id)
		a.Links[i].Metric = m
	}
	return a, nil
}

func parseLSA(b []byte) (lsaView, error) {
	if len(b) < lsaHeaderSize+identity.SignatureSize {
		return nil, ErrShort
	}
	if b[0] != TypeLSA {
		return nil, ErrType
	}
	if b[1] != Version {
		return nil, ErrVersion
	}
	if b[2]|b[3] != 0 {
		return nil, ErrReserved
	}
	v := lsaView(b)
	n := v.nlinks()
	if n > MaxLinks {
		return nil, fmt.Errorf("route: advert with %d links: %w", n, ErrMalformed)
	}
	if len(b) != lsaHeaderSize+n*lsaLinkSize+identity.SignatureSize {
		return nil, fmt.Errorf("route: advert length %d for %d links: %w", len(b), n, ErrMalformed)
	}
	if v.seq() == 0 {
		return nil, fmt.Errorf("route: advert with sequence 0: %w", ErrMalformed)
	}
	if err := checkLinks(v, v.origin()); err != nil {
		return nil, err
	}
	return v, nil
}

func checkLinks(v lsaView, origin identity.NodeID) error {
	var prev []byte
	for i := 0; i < v.nlinks(); i++ {
		id, m := v.link(i)
		if m == 0 || m > MaxMetric {
			return fmt.Errorf("route: link metric %d out of range: %w", m, ErrMalformed)
		}
		if bytes.Equal(id, origin[:]) {
			return fmt.Errorf("route: advert lists its own origin: %w", ErrMalformed)
		}
		if prev != nil && bytes.Compare(prev, id) >= 0 {
			return fmt.Errorf("route: advert links not sorted or repeated: %w", ErrMalformed)
		}
		prev = id
	}
	return nil
}

// Entry names one advert: its origin and sequence number.
type Entry struct {
	Origin identity.NodeID
	Seq    uint64
}

// Summary states which adverts the sender holds for every origin in [From, To]
// (inclusive): an origin in range but not listed is one the sender lacks.
type Summary struct {
	From, To identity.NodeID
	Entries  []Entry
}

// EncodeSummary encodes a summary. Entries must be sorted by origin, unique,
// within [From, To], at most MaxEntries.
func EncodeSummary(s Summary) ([]byte, error) {
	if len(s.Entries) > MaxEntries {
		return nil, fmt.Errorf("route: summary with %d entries: %w", len(s.Entries), ErrMalformed)
	}
	b := make([]byte, summaryHeaderSize+len(s.Entries)*entrySize)
	b[0], b[1] = TypeSummary, Version
	copy(b[4:20], s.From[:])
	copy(b[20:36], s.To[:])
	binary.LittleEndian.PutUint16(b[36:38], uint16(len(s.Entries)))
	putEntries(b[summaryHeaderSize:], s.Entries)
	if _, err := DecodeSummary(b); err != nil {
		return nil, err
	}
	return b, nil
}

// DecodeSummary strictly decodes a summary.
func DecodeSummary(b []byte) (Summary, error) {
	if err := header(b, TypeSummary, summaryHeaderSize); err != nil {
		return Summary{}, err
	}
	var s Summary
	copy(s.From[:], b[4:20])
	copy(s.To[:], b[20:36])
	if bytes.Compare(s.From[:], s.To[:]) > 0 {
		return Summary{}, fmt.Errorf("route: summary range reversed: %w", ErrMalformed)
	}
	n := int(binary.LittleEndian.Uint16(b[36:38]))
	if n > MaxEntries || len(b) != summaryHeaderSize+n*entrySize {
		return Summary{}, fmt.Errorf("route: summary length %d for %d entries: %w", len(b), n, ErrMalformed)
	}
	var err error
	if s.Entries, err = getEntries(b[summaryHeaderSize:], n, true); err != nil {
		return Summary{}, err
	}
	if n > 0 && (bytes.Compare(s.Entries[0].Origin[:], s.From[:]) < 0 || bytes.Compare(s.Entries[n-1].Origin[:], s.To[:]) > 0) {
		return Summary{}, fmt.Errorf("route: summary entry outside its range: %w", ErrMalformed)
	}
	return s, nil
}

// EncodeAck encodes an acknowledgement of 1..MaxEntries adverts, sorted by
// origin and unique.
func EncodeAck(entries []Entry) ([]byte, error) {
	if len(entries) == 0 || len(entries) > MaxEntries {
		return nil, fmt.Errorf("route: ack with %d entries: %w", len(entries), ErrMalformed)
	}
	b := make([]byte, ackHeaderSize+len(entries)*entrySize)
	b[0], b[1] = TypeAck, Version
	binary.LittleEndian.PutUint16(b[4:6], uint16(len(entries)))
	putEntries(b[ackHeaderSize:], entries)
	return b, nil
}

// DecodeAck strictly decodes an acknowledgement.
func DecodeAck(b []byte) ([]Entry, error) {
	if err := header(b, TypeAck, ackHeaderSize); err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint16(b[4:6]))
	if n == 0 || n > MaxEntries || len(b) != ackHeaderSize+n*entrySize {
		return nil, fmt.Errorf("route: ack length %d for %d entries: %w", len(b), n, ErrMalformed)
	}
	return getEntries(b[ackHeaderSize:], n, true)
}

func header(b []byte, typ byte, size int) error {
	if len(b) < size {
		return ErrShort
	}
	if b[0] != typ {
		return ErrType
	}
	if b[1] != Version {
		return ErrVersion
	}
	if b[2]|b[3] != 0 {
		return ErrReserved
	}
	return nil
}

func putEntries(b []byte, es []Entry) {
	for i, e := range es {
		o := i * entrySize
		copy(b[o:o+16], e.Origin[:])
		binary.LittleEndian.PutUint64(b[o+16:o+24], e.Seq)
	}
}

func getEntries(b []byte, n int, sorted bool) ([]Entry, error) {
	es := make([]Entry, n)
	for i := range es {
		o := i * entrySize
		copy(es[i].Origin[:], b[o:o+16])
		es[i].Seq = binary.LittleEndian.Uint64(b[o+16 : o+24])
		if es[i].Seq == 0 {
			return nil, fmt.Errorf("route: entry with sequence 0: %w", ErrMalformed)
		}
		if sorted && i > 0 && bytes.Compare(es[i-1].Origin[:], es[i].Origin[:]) >= 0 {
			return nil, fmt.Errorf("route: entries not sorted or repeated: %w", ErrMalformed)
		}
	}
	return es, nil
}
