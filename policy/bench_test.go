package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchPolicy is shaped like a real mesh's: role groups, a few services,
// ICMP for everyone.
const benchPolicy = `{
  "groups": {
    "group:admins": ["node:n1", "node:n2", "node:n3"],
    "group:ops": ["group:admins", "tag:ops"],
    "group:frontend": ["tag:web", "tag:edge"]
  },
  "hosts": {"office": "192.0.2.0/24"},
  "acls": [
    {"action": "accept", "src": ["group:frontend"], "dst": ["tag:api:443,8080-8089"], "proto": "tcp"},
    {"action": "accept", "src": ["tag:api"], "dst": ["tag:db:5432", "tag:cache:6379"], "proto": "tcp"},
    {"action": "accept", "src": ["group:ops", "office"], "dst": ["*:22"], "proto": "tcp"},
    {"action": "accept", "src": ["tag:mon"], "dst": ["*:9100,9256"], "proto": "tcp"},
    {"action": "accept", "src": ["*"], "dst": ["tag:dns:53"]},
    {"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "icmp"},
    {"action": "accept", "src": ["tag:edge"], "dst": ["tag:web:80,443"], "proto": "tcp"},
    {"action": "accept", "src": ["group:admins"], "dst": ["*:*"]}
  ]
}`

var benchTags = []string{"web", "edge", "api", "db", "cache", "ops", "mon", "dns"}

// benchMembers returns n members, each with an IPv4 and an IPv6 address and
// one or two tags.
func benchMembers(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{
			ID:    fmt.Sprintf("%016x", i),
			Name:  fmt.Sprintf("n%d", i),
			Tags:  []string{benchTags[i%len(benchTags)]},
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), netip.AddrFrom16([16]byte{0xfd, 0x7a, 14: byte(i >> 8), 15: byte(i)})},
		}
		if i%5 == 0 {
			ms[i].Tags = append(ms[i].Tags, "mon")
		}
	}
	return ms
}

// BenchmarkCompile compiles the rules of one node (tagged api: reachable by
// the frontend, ops, monitoring and admins) in a mesh of 1,000 members; the
// control plane does this for every node whose view changes.
func BenchmarkCompile(b *testing.B) {
	p := mustParse(b, benchPolicy)
	members := benchMembers(1000)
	node := members[2] // tag:api
	var rules Rules
	b.ReportAllocs()
	for b.Loop() {
		rules = p.Compile(node, members)
	}
	srcs := 0
	for _, r := range rules.Allow {
		srcs += len(r.Srcs)
	}
	b.ReportMetric(float64(len(rules.Allow)), "rules")
	b.ReportMetric(float64(srcs), "srcs")
}

// BenchmarkCompileMesh compiles every node's rules, as after a policy change.
func BenchmarkCompileMesh(b *testing.B) {
	p := mustParse(b, benchPolicy)
	members := benchMembers(1000)
	b.ReportAllocs()
	for b.Loop() {
		for _, node := range members {
			p.Compile(node, members)
		}
	}
}

// BenchmarkFilterAllow matches packets against a compiled rule set of a
// node in a 1,000-member mesh: a host hit, a wide-prefix hit and a miss.
func BenchmarkFilterAllow(b *testing.B) {
	p := mustParse(b, benchPolicy)
	members := benchMembers(1000)
	f := p.Compile(members[2], members).Compile()
	cases := []struct {
		name  string
		src   netip.Addr
		proto uint8
		port  uint16
	}{
		{"host", members[0].Addrs[0], ProtoTCP, 443},             // tag:web → api:443
		{"wide", netip.MustParseAddr("192.0.2.7"), ProtoTCP, 22}, // office → *:22
		{"miss", members[3].Addrs[1], ProtoTCP, 443},             // tag:db
	}
	for _, c := range cases {
		if c.name != "miss" && !f.Allow(c.src, c.proto, c.port) {
			b.Fatalf("%s: denied", c.name)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f.Allow(c.src, c.proto, c.port)
			}
		})
	}
}

func BenchmarkCheck(b *testing.B) {
	p := mustParse(b, benchPolicy)
	members := benchMembers(1000)
	b.ReportAllocs()
	for b.Loop() {
		p.Check(members[0], members[2], ProtoTCP, 443)
	}
}

func BenchmarkParse(b *testing.B) {
	data := []byte(benchPolicy)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
