package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/e2e/netns"
	"github.com/x0tta6bl4/x0t/internal/testutil"
)

// lan puts namespaces on one Ethernet segment: a bridge in a hub namespace with
// a veth to each, addresses 10.99.0.<host>/24.
func lan(t *testing.T, env *netns.Env, hosts map[*netns.NS]int) {
	t.Helper()
	hub := env.NewNS("hub")
	env.MustRun(hub, "ip", "link", "add", "br0", "type", "bridge")
	env.MustRun(hub, "ip", "link", "set", "br0", "up")
	i := 0
	for ns, host := range hosts {
		port := fmt.Sprintf("p%d", i)
		i++
		env.Veth(netns.End{NS: hub, Dev: port}, netns.End{NS: ns, Dev: "eth0", Addrs: []string{fmt.Sprintf("10.99.0.%d/24", host)}})
		env.MustRun(hub, "ip", "link", "set", port, "master", "br0")
	}
}

// cli runs an admin command against the control plane from inside ns.
type cli struct {
	t    *testing.T
	ns   *netns.NS
	env  []string
	data string
}

func (c *cli) run(args ...string) (string, error) {
	cmd := c.ns.Command(context.Background(), x0tBin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("x0t %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// overlayAddr waits for the node's TUN and returns its IPv4 overlay address.
func overlayAddr(t *testing.T, ns *netns.NS, within time.Duration) netip.Addr {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var addr netip.Addr
	err := netns.Poll(ctx, 100*time.Millisecond, func() error {
		ps, err := ns.Addrs(ctx, "x0t0")
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Addr().Is4() {
				addr = p.Addr()
				return nil
			}
		}
		return fmt.Errorf("no IPv4 address on x0t0 yet")
	})
	if err != nil {
		t.Fatalf("%s: %v", ns.Name, err)
	}
	return addr
}

// TestControlPlaneMesh is issue 3's end-to-end check: a control plane and three
// nodes in their own namespaces; enrollment by token (auto-approved and
// approved by hand); ping between every pair; an ACL allowing alpha→beta on
// one port shown by real connections; revocation of gamma cutting it off
// within 5 s; an audit log that shows each step and verifies.
func TestControlPlaneMesh(t *testing.T) {
	env := netns.New(t)
	cp, a, b, c := env.NewNS("cp"), env.NewNS("a"), env.NewNS("b"), env.NewNS("c")
	lan(t, env, map[*netns.NS]int{cp: 10, a: 1, b: 2, c: 3})

	dir := t.TempDir()
	data := filepath.Join(dir, "cp")
	// Debug logs: the run's logs are scanned for secrets at the end.
	server := env.Start(cp, x0tBin, "--log-level", "debug", "control", "serve", "--listen", "10.99.0.10:8443", "--data", data)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := netns.Poll(ctx, 50*time.Millisecond, func() error {
		if !strings.Contains(server.Output(), "control plane listening") {
			return fmt.Errorf("not listening yet: %s", server.Output())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(data, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(data, "admin.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.key mode: %v %v", fi.Mode(), err)
	}
	url := "https://10.99.0.10:8443"
	tlsEnv := "SSL_CERT_FILE=" + filepath.Join(data, "tls.crt")
	admin := &cli{t: t, ns: cp, env: []string{"X0T_CONTROL=" + url, "X0T_API_KEY=" + strings.TrimSpace(string(key)), tlsEnv}}

	admin.must("mesh", "create", "e2e")
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(admin.must("token", "create", "--mesh", "e2e", "--auto-approve", "--uses", "2", "--tags", "web", "--json")), &tok); err != nil || tok.Token == "" {
		t.Fatalf("token create --json: %v", err)
	}
	var manual struct {
		Token string `json:"token"`
	}
	json.Unmarshal([]byte(admin.must("token", "create", "--mesh", "e2e", "--json")), &manual)

	startNode := func(ns *netns.NS, name, token string) *netns.Proc {
		cmd := ns.Command(context.Background(), x0tBin, "--log-level", "debug", "node", "up", "--control", url, "--token", token,
			"--state", filepath.Join(dir, name), "--name", name, "--listen", "0.0.0.0:4242")
		cmd.Env = append(os.Environ(), tlsEnv)
		return env.StartCmd(ns, name, cmd)
	}
	procs := map[string]*netns.Proc{
		"alpha": startNode(a, "alpha", tok.Token),
		"beta":  startNode(b, "beta", tok.Token),
		"gamma": startNode(c, "gamma", manual.Token),
	}
	addrA := overlayAddr(t, a, 20*time.Second)
	addrB := overlayAddr(t, b, 20*time.Second)

	// gamma waits for an administrator.
	if err := netns.Poll(ctx, 100*time.Millisecond, func() error {
		if !strings.Contains(admin.must("nodes", "list", "--mesh", "e2e"), "pending") {
			return fmt.Errorf("gamma not pending yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(ctx, "ip", "link", "show", "x0t0"); err == nil {
		t.Fatal("a pending node brought its tunnel up")
	}
	admin.must("nodes", "approve", "--mesh", "e2e", "gamma")
	addrC := overlayAddr(t, c, 20*time.Second)

	nodes := map[string]struct {
		ns   *netns.NS
		addr netip.Addr
	}{"alpha": {a, addrA}, "beta": {b, addrB}, "gamma": {c, addrC}}
	t.Run("ping between every pair", func(t *testing.T) {
		for from, f := range nodes {
			for to, d := range nodes {
				if from != to {
					waitPing(t, f.ns, d.addr, 15*time.Second)
				}
			}
		}
	})

	t.Run("ACL: alpha may reach beta on tcp/5555 only", func(t *testing.T) {
		policy := `{
  "acls": [{"action": "accept", "src": ["node:alpha"], "dst": ["node:beta:5555"], "proto": "tcp"}],
  "tests": [
    {"src": "node:alpha", "dst": "node:beta", "proto": "tcp", "port": 5555, "want": "accept"},
    {"src": "node:alpha", "dst": "node:beta", "proto": "tcp", "port": 5556, "want": "deny"},
    {"src": "node:gamma", "dst": "node:beta", "proto": "tcp", "port": 5555, "want": "deny"}
  ]
}`
		file := filepath.Join(dir, "policy.json")
		os.WriteFile(file, []byte(policy), 0o644)
		bad := filepath.Join(dir, "bad.json")
		os.WriteFile(bad, []byte(strings.Replace(policy, `"port": 5556, "want": "deny"`, `"port": 5556, "want": "accept"`, 1)), 0o644)
		if out, err := admin.run("acl", "set", "--mesh", "e2e", "--file", bad); err == nil {
			t.Fatalf("a policy whose tests fail was accepted:\n%s", out)
		}
		admin.must("acl", "set", "--mesh", "e2e", "--file", file)
		admin.must("acl", "test", "--mesh", "e2e")
		// The allowed port works (give the netmap a moment to arrive)...
		time.Sleep(time.Second)
		transfer(t, env, a, b, addrB, 1<<20)
		// ... another port does not, nor does anything from gamma or to alpha.
		if err := tryConnect(t, env, a, b, addrB, 5556); err == nil {
			t.Fatal("alpha reached beta on tcp/5556")
		}
		if err := tryConnect(t, env, c, b, addrB, 5555); err == nil {
			t.Fatal("gamma reached beta on tcp/5555")
		}
		if err := b.Ping(ctx, addrA.String()); err == nil {
			t.Fatal("beta pinged alpha under a policy that allows none of it")
		}
		// Back to the default policy: everyone may reach everyone.
		os.WriteFile(file, []byte(`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`), 0o644)
		admin.must("acl", "set", "--mesh", "e2e", "--file", file)
		waitPing(t, c, addrA, 10*time.Second)
	})

	t.Run("revoke gamma: cut off within 5 s", func(t *testing.T) {
		waitPing(t, c, addrA, 10*time.Second)
		waitPing(t, b, addrC, 10*time.Second)
		start := time.Now()
		admin.must("nodes", "revoke", "--mesh", "e2e", "gamma")
		deadline := start.Add(5 * time.Second)
		for {
			_, errCA := c.Run(ctx, "ping", "-n", "-q", "-c", "1", "-W", "0.2", addrA.String())
			_, errBC := b.Run(ctx, "ping", "-n", "-q", "-c", "1", "-W", "0.2", addrC.String())
			if errCA != nil && errBC != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("gamma still connected %v after revocation", time.Since(start))
			}
		}
		t.Logf("gamma cut off %v after the revoke command", time.Since(start).Round(time.Millisecond))
		// and it stays cut off
		time.Sleep(2 * time.Second)
		if err := c.Ping(ctx, addrB.String()); err == nil {
			t.Fatal("revoked gamma reached beta later")
		}
		waitPing(t, a, addrB, 5*time.Second)
	})

	t.Run("restart with only --control and --state rejoins", func(t *testing.T) {
		if err := procs["alpha"].Kill(); err == nil {
			t.Fatal("kill -9 reported a clean exit")
		}
		cmd := a.Command(context.Background(), x0tBin, "node", "up", "--control", url,
			"--state", filepath.Join(dir, "alpha"), "--listen", "0.0.0.0:4242")
		cmd.Env = append(os.Environ(), tlsEnv)
		procs["alpha"] = env.StartCmd(a, "alpha-restarted", cmd)
		if got := overlayAddr(t, a, 20*time.Second); got != addrA {
			t.Fatalf("rejoined with address %v, had %v", got, addrA)
		}
		waitPing(t, a, addrB, 15*time.Second)
		waitPing(t, b, addrA, 5*time.Second)
		if strings.Contains(procs["alpha"].Output(), "generated node keys") {
			t.Fatal("restart generated new keys")
		}
	})

	t.Run("audit log shows each step and verifies", func(t *testing.T) {
		out := admin.must("audit", "list", "--json")
		for _, action := range []string{"mesh.create", "token.create", "node.enroll", "node.approve", "acl.set", "node.revoke"} {
			if !strings.Contains(out, action) {
				t.Errorf("audit log lacks %s", action)
			}
		}
		admin.must("audit", "verify")
	})

	for name, p := range procs {
		if exited, err := p.Exited(); exited && name != "gamma" {
			t.Errorf("%s exited: %v\n%s", name, err, p.Output())
		}
	}
	if err := server.Stop(10 * time.Second); err != nil {
		t.Errorf("control plane exit after SIGTERM: %v", err)
	}

	t.Run("no secret in any log", func(t *testing.T) {
		s := testutil.NewSecrets()
		s.String("auto-approve join token", tok.Token, shownToken)
		s.String("manual join token", manual.Token, shownToken)
		controlPlaneSecrets(t, s, data)
		for name := range procs {
			nodeSecrets(t, s, name, filepath.Join(dir, name))
		}
		assertNoSecretsInLogs(t, env, s)
	})
}

// tryConnect runs a sink on dst:port and a source in src with a short
// timeout; it returns nil only if the connection and transfer succeeded.
func tryConnect(t *testing.T, env *netns.Env, src, dst *netns.NS, addr netip.Addr, port uint16) error {
	t.Helper()
	self, _ := os.Executable()
	target := netip.AddrPortFrom(addr, port).String()
	sinkCmd := dst.Command(context.Background(), self, "sink", target, "1024")
	sinkCmd.Env = append(os.Environ(), "X0T_E2E_HELPER=sink")
	sink := env.StartCmd(dst, "sink", sinkCmd)
	defer sink.Stop(time.Second)
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := src.Command(ctx, self, "source", target, "1024")
	cmd.Env = append(os.Environ(), "X0T_E2E_HELPER=source")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}
