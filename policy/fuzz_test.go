package policy

import (
	"bytes"
	"hash/fnv"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse feeds arbitrary bytes to Parse. Nothing may panic; whatever parses
// must marshal, parse again to an equal policy and marshal to the same bytes
// (the stored form is canonical); and on a small fixed mesh its compiled
// rules must be valid and agree with Check.
func FuzzParse(f *testing.F) {
	seeds := []string{
		examplePolicy,
		benchPolicy,
		`{}`,
		`{"acls": []}`,
		`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`,
		`{"hosts": {"lan": "10.0.0.0/30", "gw": "fd00::1"}, "acls": [{"action": "accept", "src": ["lan", "gw"], "dst": ["[fd00::2]:22", "fd00::/126:80-90", "10.0.0.1:1,2,3"], "proto": "tcp"}]}`,
		`{"groups": {"group:a": ["group:b", "tag:x"], "group:b": ["node:a", "10.0.0.0/31"]}, "acls": [{"action": "accept", "src": ["group:a"], "dst": ["group:b:*"], "proto": "icmp"}],
		  "tests": [{"src": "node:a", "dst": "node:b", "proto": "icmp", "want": "deny"}, {"src": "10.0.0.1", "dst": "tag:x", "proto": "udp", "port": 53, "want": "accept"}]}`,
		`{"acls": [{"action": "accept", "src": ["tag:x"], "dst": ["tag:y:0-65535"]}, {"action": "accept", "src": ["tag:y"], "dst": ["tag:x:22"], "proto": "sctp"}]}`,
		// Invalid ones, each near a valid one.
		`{"groups": {"group:a": ["group:b"], "group:b": ["group:a"]}}`,
		`{"acls": [{"action": "deny", "src": ["*"], "dst": ["*:*"]}]}`,
		`{"acls": [{"action": "accept", "src": ["*"], "dst": ["tag:db"]}]}`,
		`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22"], "proto": "icmp"}]}`,
		`{"acls": [], "acls": []}`,
		`{"acls": [{"action": "accept", "src": ["10.0.0.1/24"], "dst": ["*:*"]}]}`,
		`{"tests": [{"src": "node:a", "dst": "node:b", "proto": "tcp", "want": "accept"}]}`,
		`{"ACLS": []}`,
		`[]`,
		`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]} trailing`,
		"",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	members := []Member{
		{Name: "a", Tags: []string{"x"}, Addrs: addrs("10.0.0.1", "fd00::1")},
		{Name: "b", Tags: []string{"y", "tag:db"}, Addrs: addrs("10.0.0.2")},
		{Name: "c", Addrs: addrs("fd00::3")},
		{Name: "d", Tags: []string{"x", "y"}},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy and an error")
			}
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		q, err := Parse(out)
		if err != nil {
			t.Fatalf("Marshal output does not parse: %v\n%s", err, out)
		}
		if diff := cmp.Diff(p, q, ignoreResolved); diff != "" {
			t.Fatalf("re-parsed policy differs (-first +second):\n%s", diff)
		}
		again, err := q.Marshal()
		if err != nil || !bytes.Equal(out, again) {
			t.Fatalf("Marshal is not stable (%v):\n%s\n%s", err, out, again)
		}
		h := fnv.New64a()
		h.Write(data)
		g := gen{rand.New(rand.NewPCG(h.Sum64(), 4))} // packets depend on the input only, so failures reproduce
		checkCompileEqualsCheck(t, p, members, g, 4)
		p.RunTests(members)
		_ = p.Validate(members)
	})
}
