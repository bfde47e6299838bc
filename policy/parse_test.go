package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// examplePolicy is the example of docs/policy.md.
const examplePolicy = `{
  "groups": {"group:web": ["tag:web", "node:alpha"]},
  "acls": [
    {"action": "accept", "src": ["group:web"], "dst": ["tag:db:5432", "node:beta:22,80-89"], "proto": "tcp"},
    {"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "icmp"}
  ],
  "tests": [
    {"src": "node:alpha", "dst": "node:beta", "proto": "tcp", "port": 22, "want": "accept"},
    {"src": "node:gamma", "dst": "node:beta", "proto": "tcp", "port": 22, "want": "deny"}
  ]
}`

var ignoreResolved = cmpopts.IgnoreUnexported(Policy{})

func mustParse(t testing.TB, s string) *Policy {
	t.Helper()
	p, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestParseExample(t *testing.T) {
	p := mustParse(t, examplePolicy)
	want := &Policy{
		Groups: map[string][]string{"group:web": {"tag:web", "node:alpha"}},
		ACLs: []ACL{
			{Action: "accept", Src: []string{"group:web"}, Dst: []string{"tag:db:5432", "node:beta:22,80-89"}, Proto: "tcp"},
			{Action: "accept", Src: []string{"*"}, Dst: []string{"*:*"}, Proto: "icmp"},
		},
		Tests: []Test{
			{Src: "node:alpha", Dst: "node:beta", Proto: "tcp", Port: 22, Want: "accept"},
			{Src: "node:gamma", Dst: "node:beta", Proto: "tcp", Port: 22, Want: "deny"},
		},
	}
	if diff := cmp.Diff(want, p, ignoreResolved); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

func TestParseValid(t *testing.T) {
	for _, s := range []string{
		`{}`, // no rules: everything is denied
		`{"acls": []}`,
		`{"acls": null, "groups": null, "hosts": {}, "tests": []}`,
		`{"groups": {"group:empty": []}, "acls": [{"action": "accept", "src": ["group:empty"], "dst": ["*:*"]}]}`,
		`{"hosts": {"db-net": "10.1.0.0/24", "gw": "fd00::1"},
		  "acls": [{"action": "accept", "src": ["gw", "100.64.0.0/10"], "dst": ["db-net:5432", "[fd00::1]:22", "fd00::/64:80", "fd00::2:443", "10.0.0.1:0-65535"], "proto": "tcp"}],
		  "tests": [{"src": "gw", "dst": "10.1.0.7", "proto": "tcp", "port": 5432, "want": "accept"}]}`,
		`{"groups": {"group:a": ["group:b", "tag:x"], "group:b": ["group:c"], "group:c": ["node:n1", "10.0.0.0/8", "*"]},
		  "acls": [{"action": "accept", "src": ["group:a"], "dst": ["group:b:1,2,3-4"], "proto": "17"}]}`,
		`{"acls": [{"action": "accept", "src": ["tag:a"], "dst": ["tag:b:*"], "proto": "gre"}]}`,
		`{"acls": [{"action": "accept", "src": ["tag:a"], "dst": ["tag:b:*"], "proto": "58"}],
		  "tests": [{"src": "tag:a", "dst": "tag:b", "proto": "icmp", "want": "deny"}, {"src": "tag:a", "dst": "tag:b", "proto": "47", "want": "deny"}]}`,
		"\n\t{\"acls\": [] }\n\n", // whitespace around the object
	} {
		if _, err := Parse([]byte(s)); err != nil {
			t.Errorf("Parse(%s): %v", s, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	acl := func(fields string) string { return `{"acls": [` + fields + `]}` }
	tests := []struct {
		name, in, err string
	}{
		{"empty input", ``, "policy: invalid JSON"},
		{"not an object", `[]`, "policy: want a JSON object"},
		{"null", `null`, "policy: want a JSON object"},
		{"syntax", `{"acls": [}`, "policy: invalid JSON at byte"},
		{"trailing data", `{"acls": []} {}`, "policy: data after the policy object"},
		{"trailing garbage", `{"acls": []} x`, "policy: data after the policy object"},
		{"duplicate top-level key", `{"acls": [], "acls": []}`, `policy: duplicate key "acls"`},
		{"duplicate group", `{"groups": {"group:a": [], "group:a": ["*"]}}`, `policy: groups: duplicate key "group:a"`},
		{"duplicate acl field", acl(`{"action": "accept", "src": ["*"], "src": ["tag:x"], "dst": ["*:*"]}`), `policy: acls[0]: duplicate key "src"`},
		{"case-insensitive field", `{"ACLs": []}`, `policy: unknown field "ACLs"`},
		{"tailscale field", `{"tagOwners": {}}`, `unknown field "tagOwners" (want one of groups, hosts, acls, tests)`},
		{"unknown acl field", acl(`{"action": "accept", "src": ["*"], "dst": ["*:*"], "ports": ["x"]}`), `policy: acls[0]: unknown field "ports"`},
		{"unknown test field", `{"tests": [{"src": "node:a", "accept": ["node:b:22"]}]}`, `policy: tests[0]: unknown field "accept"`},
		{"wrong type", `{"acls": {}}`, "policy: acls: got JSON object, want an array"},
		{"wrong element type", acl(`{"action": "accept", "src": "*", "dst": ["*:*"]}`), "policy: acls.src: got JSON string, want an array"},
		{"port overflow", `{"tests": [{"src": "node:a", "dst": "node:b", "proto": "tcp", "port": 70000, "want": "accept"}]}`, "want a number 0-65535"},
		{"too deep", `{"groups": {"group:a": [[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]}}`, "nested deeper than"},
		{"too large", `{"acls": []` + strings.Repeat(" ", MaxPolicySize) + `}`, "bytes, at most"},

		{"deny action", acl(`{"action": "deny", "src": ["*"], "dst": ["*:*"]}`), `policy: acls[0].action: "deny": only "accept" rules exist`},
		{"no action", acl(`{"src": ["*"], "dst": ["*:*"]}`), `policy: acls[0].action: "": only "accept"`},
		{"no src", acl(`{"action": "accept", "dst": ["*:*"]}`), "policy: acls[0].src: empty"},
		{"no dst", acl(`{"action": "accept", "src": ["*"], "dst": []}`), "policy: acls[0].dst: empty"},
		{"user selector", acl(`{"action": "accept", "src": ["alice@example.com"], "dst": ["*:*"]}`), `policy: acls[0].src[0]: "alice@example.com": users are not selectors`},
		{"bad tag", acl(`{"action": "accept", "src": ["*", "tag:Web"], "dst": ["*:*"]}`), `policy: acls[0].src[1]: "tag:Web": bad tag name`},
		{"empty node", acl(`{"action": "accept", "src": ["node:"], "dst": ["*:*"]}`), `policy: acls[0].src[0]: "node:": bad node name`},
		{"unknown group", acl(`{"action": "accept", "src": ["group:nope"], "dst": ["*:*"]}`), `policy: acls[0].src[0]: "group:nope": unknown group`},
		{"autogroup", acl(`{"action": "accept", "src": ["autogroup:member"], "dst": ["*:*"]}`), "autogroups are not supported"},
		{"unknown name", acl(`{"action": "accept", "src": ["bogus"], "dst": ["*:*"]}`), `policy: acls[0].src[0]: "bogus": unknown selector`},
		{"ports on a source", acl(`{"action": "accept", "src": ["tag:web:22"], "dst": ["*:*"]}`), "(ports belong on destinations)"},
		{"dst without ports", acl(`{"action": "accept", "src": ["*"], "dst": ["*:*", "tag:db"]}`), `policy: acls[0].dst[1]: "tag:db": no ports: want SELECTOR:PORTS, as tag:db:*`},
		{"star without ports", acl(`{"action": "accept", "src": ["*"], "dst": ["*"]}`), `policy: acls[0].dst[0]: "*": no ports`},
		{"address without ports", acl(`{"action": "accept", "src": ["*"], "dst": ["10.0.0.1"]}`), `"10.0.0.1": no ports`},
		{"port name", acl(`{"action": "accept", "src": ["*"], "dst": ["tag:db:http"]}`), `policy: acls[0].dst[0]: "tag:db:http": ports "http": bad port "http"`},
		{"reversed range", acl(`{"action": "accept", "src": ["*"], "dst": ["tag:db:90-80"]}`), "range 90-80 is reversed"},
		{"port too big", acl(`{"action": "accept", "src": ["*"], "dst": ["tag:db:65536"]}`), `bad port "65536"`},
		{"leading zero", acl(`{"action": "accept", "src": ["*"], "dst": ["tag:db:022"]}`), `bad port "022"`},
		{"empty list item", acl(`{"action": "accept", "src": ["*"], "dst": ["tag:db:22,"]}`), `bad port ""`},
		{"space in list", acl(`{"action": "accept", "src": ["*"], "dst": ["tag:db:22, 80"]}`), `bad port " 80"`},
		{"star in list", acl(`{"action": "accept", "src": ["*"], "dst": ["tag:db:*,22"]}`), "* can not be part of a list"},
		{"no ports after colon", acl(`{"action": "accept", "src": ["*"], "dst": ["tag:db:"]}`), "no ports after ':'"},
		{"bare ipv6 dst", acl(`{"action": "accept", "src": ["*"], "dst": ["fd00::1"]}`), `"fd00::1": no ports: write an IPv6 destination as [ADDR]:PORTS, as [fd00::1]:*`},
		{"unclosed bracket", acl(`{"action": "accept", "src": ["*"], "dst": ["[fd00::1:22"]}`), `"[fd00::1:22": want [ADDR]:PORTS`},
		{"star with ports as source", acl(`{"action": "accept", "src": ["*:*"], "dst": ["*:*"]}`), "(ports belong on destinations)"},
		{"icmp with ports", acl(`{"action": "accept", "src": ["*"], "dst": ["tag:db:22"], "proto": "icmp"}`), `policy: acls[0].dst[0]: "tag:db:22": proto icmp has no ports: write tag:db:*`},
		{"gre with ports", acl(`{"action": "accept", "src": ["*"], "dst": ["tag:db:*", "tag:x:1"], "proto": "47"}`), `policy: acls[0].dst[1]: "tag:x:1": proto 47 has no ports`},
		{"proto case", acl(`{"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "TCP"}`), `policy: acls[0].proto: "TCP": want tcp, udp`},
		{"proto zero", acl(`{"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "0"}`), "leave proto out to mean any"},
		{"proto too big", acl(`{"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "256"}`), `"256": want`},
		{"proto leading zero", acl(`{"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "06"}`), `"06": want`},
		{"host bits", acl(`{"action": "accept", "src": ["10.0.0.1/24"], "dst": ["*:*"]}`), `"10.0.0.1/24": host bits set: did you mean 10.0.0.0/24?`},
		{"bad prefix", acl(`{"action": "accept", "src": ["10.0.0.0/33"], "dst": ["*:*"]}`), `"10.0.0.0/33": bad IP prefix`},
		{"mapped address", acl(`{"action": "accept", "src": ["::ffff:10.0.0.1"], "dst": ["*:*"]}`), "IPv4-mapped"},
		{"zone", acl(`{"action": "accept", "src": ["fe80::1%eth0"], "dst": ["*:*"]}`), "bad IP address"},
		{"too many port ranges", acl(`{"action": "accept", "src": ["*"], "dst": ["tag:a:` + strings.Repeat("1,", 600) + `1", "tag:b:` + strings.Repeat("1,", 600) + `1"]}`), "policy: acls[0].dst: 1202 port ranges, at most 1000"},

		{"bad host name", `{"hosts": {"Bad": "10.0.0.1"}}`, `policy: hosts["Bad"]: bad host name`},
		{"bad host value", `{"hosts": {"db": "db.example.com"}}`, `policy: hosts["db"]: "db.example.com": bad IP address`},
		{"bad group name", `{"groups": {"web": []}}`, `policy: groups["web"]: bad group name`},
		{"bad group member", `{"groups": {"group:a": ["tag:ok", "tag:X"]}}`, `policy: groups["group:a"][1]: "tag:X": bad tag name`},
		{"group of unknown group", `{"groups": {"group:a": ["group:b"]}}`, `policy: groups["group:a"][0]: "group:b": unknown group`},
		{"cycle", `{"groups": {"group:a": ["group:b"], "group:b": ["group:c"], "group:c": ["tag:x", "group:a"]}}`, "policy: groups: cycle group:a → group:b → group:c → group:a"},
		{"self cycle", `{"groups": {"group:a": ["group:a"]}}`, "policy: groups: cycle group:a → group:a"},

		{"test without proto", `{"tests": [{"src": "node:a", "dst": "node:b", "port": 22, "want": "accept"}]}`, "policy: tests[0].proto: missing"},
		{"test without port", `{"tests": [{"src": "node:a", "dst": "node:b", "proto": "tcp", "want": "accept"}]}`, "policy: tests[0].port: missing"},
		{"test icmp port", `{"tests": [{"src": "node:a", "dst": "node:b", "proto": "icmp", "port": 1, "want": "accept"}]}`, "policy: tests[0].port: 1: proto icmp has no ports"},
		{"test want", `{"tests": [{"src": "node:a", "dst": "node:b", "proto": "udp", "port": 53, "want": "allow"}]}`, `policy: tests[0].want: "allow"`},
		{"test group", `{"tests": [{"src": "group:x", "dst": "node:b", "proto": "udp", "port": 53, "want": "deny"}]}`, `policy: tests[0].src: "group:x": want node:NAME, tag:NAME or an IP address`},
		{"test prefix host", `{"hosts": {"net": "10.0.0.0/8"}, "tests": [{"src": "node:a", "dst": "net", "proto": "udp", "port": 53, "want": "deny"}]}`, `policy: tests[0].dst: "net": host 10.0.0.0/8 is a prefix`},
		{"test bad node", `{"tests": [{"src": "node:a", "dst": "node:B", "proto": "udp", "port": 53, "want": "deny"}]}`, `policy: tests[0].dst: "node:B": bad node name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.err)
			}
			if p != nil {
				t.Error("Parse returned a policy with an error")
			}
			if !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Parse error:\n %v\nwant it to contain\n %s", err, tt.err)
			}
		})
	}
}

// TestMarshalCanonical pins the stored form: field order, sorted map keys,
// indentation, no HTML escaping.
func TestMarshalCanonical(t *testing.T) {
	in := `{"tests":[{"want":"accept","port":22,"proto":"tcp","dst":"node:beta","src":"node:alpha"}],
	"acls":[{"proto":"tcp","dst":["tag:db:5432"],"src":["group:web","gw"],"action":"accept"}],
	"hosts":{"gw":"10.0.0.1"},
	"groups":{"group:web":["tag:web"],"group:admin":["node:alpha"]}}`
	const want = `{
  "groups": {
    "group:admin": [
      "node:alpha"
    ],
    "group:web": [
      "tag:web"
    ]
  },
  "hosts": {
    "gw": "10.0.0.1"
  },
  "acls": [
    {
      "action": "accept",
      "src": [
        "group:web",
        "gw"
      ],
      "dst": [
        "tag:db:5432"
      ],
      "proto": "tcp"
    }
  ],
  "tests": [
    {
      "src": "node:alpha",
      "dst": "node:beta",
      "proto": "tcp",
      "port": 22,
      "want": "accept"
    }
  ]
}
`
	b, err := mustParse(t, in).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("Marshal (-want +got):\n%s", diff)
	}
	b2, err := mustParse(t, string(b)).Marshal()
	if err != nil || string(b2) != string(b) {
		t.Errorf("Marshal of the re-parsed policy differs (%v)", err)
	}

	empty, err := mustParse(t, `{"groups": {}, "tests": []}`).Marshal()
	if err != nil || string(empty) != "{\n  \"acls\": []\n}\n" {
		t.Errorf("Marshal of an empty policy = %q, %v", empty, err)
	}
	nilGroup, err := (&Policy{Groups: map[string][]string{"group:a": nil}}).Marshal()
	if err != nil || !strings.Contains(string(nilGroup), `"group:a": []`) {
		t.Errorf("a group with nil members marshals as %s, %v", nilGroup, err)
	}
}

func TestDefault(t *testing.T) {
	p := Default()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	q := mustParse(t, string(b))
	if diff := cmp.Diff(p, q, ignoreResolved); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if err := p.Validate(nil); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// Each call returns a fresh policy: callers may not share a mutable one.
	Default().ACLs[0].Src[0] = "tag:x"
	if Default().ACLs[0].Src[0] != "*" {
		t.Error("Default returns shared state")
	}
}

// A Policy embedded in an API message is parsed as strictly and marshals in
// the canonical shape.
func TestPolicyInJSONMessage(t *testing.T) {
	type request struct {
		Mesh   string  `json:"mesh"`
		Policy *Policy `json:"policy"`
	}
	var req request
	if err := json.Unmarshal([]byte(`{"mesh": "m", "policy": `+examplePolicy+`}`), &req); err != nil {
		t.Fatal(err)
	}
	if !req.Policy.Check(Member{Name: "alpha"}, Member{Name: "beta"}, ProtoTCP, 22) {
		t.Error("decoded policy is not usable")
	}
	err := json.Unmarshal([]byte(`{"mesh": "m", "policy": {"acls": [{"action": "deny", "src": ["*"], "dst": ["*:*"]}]}}`), &req)
	if err == nil || !strings.Contains(err.Error(), "policy: acls[0].action") {
		t.Errorf("embedded invalid policy: %v", err)
	}
	b, err := json.Marshal(request{Mesh: "m", Policy: Default()})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"mesh":"m","policy":{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}}`
	if string(b) != want {
		t.Errorf("embedded Marshal:\n got %s\nwant %s", b, want)
	}
	b, err = json.Marshal(struct{ P Policy }{P: Policy{}})
	if err != nil || string(b) != `{"P":{"acls":[]}}` {
		t.Errorf("embedded value Marshal: %s, %v", b, err)
	}
}

// A policy that names a large group many times is refused instead of taking
// time and memory out of proportion to its size.
func TestParseExpansionBound(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"groups": {"group:big": [`)
	for i := range 40000 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"tag:t%d"`, i)
	}
	b.WriteString(`]`)
	for i := range 60 {
		fmt.Fprintf(&b, `, "group:g%d": ["group:big", "tag:x"]`, i)
	}
	b.WriteString(`}}`)
	_, err := Parse([]byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "groups expand to more than") {
		t.Fatalf("Parse = %v, want an expansion error", err)
	}
}
