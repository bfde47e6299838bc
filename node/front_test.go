package node

import (
	"net/netip"
	"testing"
)

// TestSourceQuota: a source may hold perSourceQueued datagrams in the front
// queue, another source keeps its own share, and a slot given back is free
// again. The buckets are keyed per node, so which ports share a genuine
// peer's bucket can not be worked out in advance.
func TestSourceQuota(t *testing.T) {
	q := newSourceQuota()
	src := netip.MustParseAddrPort("192.0.2.1:51820")
	for i := range perSourceQueued {
		if !q.take(src) {
			t.Fatalf("slot %d of %d refused", i, perSourceQueued)
		}
	}
	if q.take(src) {
		t.Fatal("a source took more than its share")
	}
	other := netip.MustParseAddrPort("192.0.2.1:51821")
	for port := uint16(51822); q.index(other) == q.index(src); port++ {
		other = netip.AddrPortFrom(other.Addr(), port) // a neighbour in another bucket
	}
	if !q.take(other) {
		t.Fatal("another source was refused while the first one was at its share")
	}
	q.give(src)
	if !q.take(src) {
		t.Fatal("a slot given back was not free")
	}

	// Another node's buckets: the same 64 sources land elsewhere (by chance
	// in the same bucket about once in 4,096).
	r := newSourceQuota()
	same := 0
	for i := range 64 {
		a := netip.AddrPortFrom(src.Addr(), uint16(40000+i))
		if q.index(a) == r.index(a) {
			same++
		}
	}
	if same > 4 {
		t.Fatalf("%d of 64 sources in the same bucket on two nodes: the hash is not keyed", same)
	}
}
