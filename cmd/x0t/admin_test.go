package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/internal/testutil"
)

// The admin CLI, black box: the real binary against a real "x0t control
// serve", trusting its self-signed certificate through SSL_CERT_FILE.

var x0tBin string

func buildX0t(t *testing.T) string {
	t.Helper()
	if x0tBin != "" {
		return x0tBin
	}
	dir, err := os.MkdirTemp("", "x0t-cli-test")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "x0t")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	x0tBin = bin
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if x0tBin != "" {
		os.RemoveAll(filepath.Dir(x0tBin))
	}
	os.Exit(code)
}

type cliEnv struct {
	t    *testing.T
	bin  string
	dir  string
	url  string
	env  []string
	proc *exec.Cmd
	logs *testutil.SyncBuffer
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startControl(t *testing.T) *cliEnv {
	t.Helper()
	e := &cliEnv{t: t, bin: buildX0t(t), dir: t.TempDir(), logs: &testutil.SyncBuffer{}}
	addr := freePort(t)
	e.url = "https://" + addr
	e.proc = exec.Command(e.bin, "control", "serve", "--listen", addr, "--data", e.dir, "--tls-san", "control.example")
	e.proc.Stderr = e.logs
	if err := e.proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if e.proc.ProcessState == nil {
			e.proc.Process.Kill()
			e.proc.Wait()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		key, err := os.ReadFile(filepath.Join(e.dir, "admin.key"))
		if c, derr := net.Dial("tcp", addr); err == nil && derr == nil {
			c.Close()
			e.env = append(os.Environ(), "SSL_CERT_FILE="+filepath.Join(e.dir, "tls.crt"), "X0T_CONTROL="+e.url,
				"X0T_API_KEY="+strings.TrimSpace(string(key)))
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("control plane did not start:\n%s", e.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run runs x0t and returns stdout, stderr and the exit code.
func (e *cliEnv) run(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(e.bin, args...)
	cmd.Env = e.env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// ok runs x0t and requires success.
func (e *cliEnv) ok(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run("", args...)
	if code != 0 {
		e.t.Fatalf("x0t %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fails runs x0t and requires a failure with a one-line error.
func (e *cliEnv) fails(want string, args ...string) string {
	e.t.Helper()
	_, errOut, code := e.run("", args...)
	if code == 0 {
		e.t.Fatalf("x0t %s: succeeded, want failure", strings.Join(args, " "))
	}
	if strings.Count(strings.TrimRight(errOut, "\n"), "\n") != 0 || !strings.HasPrefix(errOut, "x0t: ") || !strings.Contains(errOut, want) {
		e.t.Fatalf("x0t %s: want one line with %q, got %q", strings.Join(args, " "), want, errOut)
	}
	return errOut
}

func (e *cliEnv) json(v any, args ...string) {
	e.t.Helper()
	out := e.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("x0t %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestCLI(t *testing.T) {
	e := startControl(t)
	if !strings.Contains(e.logs.String(), "admin.key") {
		t.Errorf("the log does not name admin.key:\n%s", e.logs)
	}
	if fi, err := os.Stat(filepath.Join(e.dir, "admin.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.key: %v %v", fi, err)
	}

	// Meshes.
	if out := e.ok("mesh", "create", "prod"); !strings.Contains(out, "100.64.0.0/10") {
		t.Fatalf("mesh create: %s", out)
	}
	e.ok("mesh", "create", "lab", "--prefix", "10.20.0.0/16", "--transports", "udp,websocket")
	var meshes []apitypes.Mesh
	e.json(&meshes, "mesh", "list")
	if len(meshes) != 2 || meshes[0].Name != "prod" && meshes[1].Name != "prod" {
		t.Fatalf("mesh list: %+v", meshes)
	}
	if out := e.ok("mesh", "list"); !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "10.20.0.0/16") {
		t.Fatalf("mesh list table:\n%s", out)
	}
	var lab apitypes.Mesh
	e.json(&lab, "mesh", "show", "lab")
	if lab.IPv4Prefix != "10.20.0.0/16" || len(lab.Transports) != 2 {
		t.Fatalf("mesh show: %+v", lab)
	}
	e.ok("mesh", "delete", "lab")
	e.fails("mesh not found", "mesh", "show", "lab")
	e.fails("422", "mesh", "create", "Bad_Name")

	// Tokens: plain output is the token alone; --json has it in "token".
	tok := strings.TrimSpace(e.ok("token", "create", "--mesh", "prod", "--auto-approve", "--tags", "web,db", "--ttl", "1h", "--uses", "5"))
	if !strings.HasPrefix(tok, "x0t_join_") || strings.Contains(tok, "\n") {
		t.Fatalf("token create: %q", tok)
	}
	var manual apitypes.CreatedToken
	e.json(&manual, "token", "create", "--mesh", "prod")
	if !strings.HasPrefix(manual.Secret, "x0t_join_") || manual.MaxUses != 1 || manual.AutoApprove {
		t.Fatalf("token create --json: %+v", manual)
	}
	var toks []apitypes.Token
	e.json(&toks, "token", "list", "--mesh", "prod")
	if len(toks) != 2 {
		t.Fatalf("token list: %+v", toks)
	}
	if out := e.ok("token", "list", "--mesh", "prod"); strings.Contains(out, tok) {
		t.Fatal("token list shows a secret")
	}

	// Nodes enrolled through the API, managed with the CLI.
	c, err := controlclient.New(e.url, controlclient.Options{Fingerprint: certSHA(t, e.dir)})
	if err != nil {
		t.Fatal(err)
	}
	enroll := func(token, name string) string {
		k, _ := identity.GenerateNodeKey()
		n := c.Node(k)
		if _, err := n.Enroll(context.Background(), controlclient.NewEnrollRequest(token, name, k, []string{"192.0.2.9:4242"})); err != nil {
			t.Fatal(err)
		}
		return n.ID().String()
	}
	enroll(tok, "web1")
	enroll(manual.Secret, "laptop")
	var nodes []apitypes.Node
	e.json(&nodes, "nodes", "list", "--mesh", "prod")
	if len(nodes) != 2 {
		t.Fatalf("nodes list: %+v", nodes)
	}
	if out := e.ok("nodes", "list", "--mesh", "prod"); !strings.Contains(out, "pending") || !strings.Contains(out, "approved") {
		t.Fatalf("nodes list table:\n%s", out)
	}
	var n apitypes.Node
	e.json(&n, "nodes", "approve", "--mesh", "prod", "laptop")
	if n.Status != "approved" {
		t.Fatalf("nodes approve: %+v", n)
	}
	e.json(&n, "nodes", "tag", "--mesh", "prod", "laptop", "--tags", "dev,ssh")
	if strings.Join(n.Tags, ",") != "dev,ssh" {
		t.Fatalf("nodes tag: %+v", n)
	}
	e.fails("node not found", "nodes", "approve", "--mesh", "prod", "ghost")

	// ACL: set from a file and from stdin, get, tests.
	pol := `{"acls":[{"action":"accept","src":["tag:dev"],"dst":["tag:web:22"],"proto":"tcp"}],
	"tests":[{"src":"node:laptop","dst":"node:web1","proto":"tcp","port":22,"want":"accept"},
	         {"src":"node:web1","dst":"node:laptop","proto":"tcp","port":22,"want":"deny"}]}`
	file := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(file, []byte(pol), 0o644)
	e.ok("acl", "set", "--mesh", "prod", "--file", file)
	if out := e.ok("acl", "get", "--mesh", "prod"); !strings.Contains(out, `"tag:dev"`) {
		t.Fatalf("acl get: %s", out)
	}
	if out := e.ok("acl", "test", "--mesh", "prod"); strings.Count(out, "pass") != 2 {
		t.Fatalf("acl test:\n%s", out)
	}
	if out := e.ok("acl", "test", "--mesh", "prod", "--src", "laptop", "--dst", "web1", "--port", "22"); strings.TrimSpace(out) != "accept" {
		t.Fatalf("acl test one packet: %q", out)
	}
	e.fails("want accept", "acl", "test", "--mesh", "prod", "--src", "web1", "--dst", "laptop", "--port", "22", "--want", "accept")
	bad := strings.Replace(pol, `"want":"deny"`, `"want":"accept"`, 1)
	if _, errOut, code := e.run(bad, "acl", "set", "--mesh", "prod"); code == 0 || !strings.Contains(errOut, "policy refused") {
		t.Fatalf("acl set of a policy whose test fails: %d %q", code, errOut)
	}
	os.WriteFile(file, []byte(bad), 0o644)
	e.fails("1 of 2 policy tests failed", "acl", "test", "--mesh", "prod", "--file", file)

	e.ok("nodes", "revoke", "--mesh", "prod", "web1")
	e.ok("nodes", "delete", "--mesh", "prod", "web1")
	e.ok("token", "revoke", "--mesh", "prod", manual.ID)
	e.ok("token", "revoke", "--mesh", "prod", tok) // by the token itself
	e.json(&toks, "token", "list", "--mesh", "prod")
	for _, tk := range toks {
		if tk.RevokedAt == nil {
			t.Fatalf("token %s not revoked", tk.ID)
		}
	}

	// Audit: list, verify; then an edit straight in the database is named.
	var page apitypes.AuditPage
	e.json(&page, "audit", "list", "--limit", "1000")
	actions := map[string]bool{}
	for _, ev := range page.Events {
		actions[ev.Action] = true
	}
	for _, a := range []string{"mesh.create", "token.create", "node.enroll", "node.approve", "node.update", "acl.set", "node.revoke", "node.delete", "token.revoke"} {
		if !actions[a] {
			t.Errorf("audit list has no %s", a)
		}
	}
	if out := e.ok("audit", "verify"); !strings.Contains(out, "verified") {
		t.Fatalf("audit verify: %s", out)
	}
	e.ok("audit", "checkpoint")
	victim := page.Events[len(page.Events)/2]
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, "control.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`UPDATE events SET actor = 'mallory' WHERE org_seq = ? AND action = ?`, victim.Seq, victim.Action)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("tamper: %v, %d rows", err, n)
	}
	db.Close()
	errOut := e.fails(fmt.Sprintf("entry %d (%s", victim.Seq, victim.Action), "audit", "verify")
	t.Logf("after the edit: %s", strings.TrimSpace(errOut))

	// Pinning the certificate instead of trusting it.
	pinned := cliEnvWithout(e, "SSL_CERT_FILE=")
	pinned.ok("mesh", "list", "--control-fingerprint", certSHA(t, e.dir))
	pinned.fails("does not match", "mesh", "list", "--control-fingerprint", strings.Repeat("ab", 32))
	pinned.fails("certificate", "mesh", "list")
	// Bad credentials, missing flags.
	wrong := cliEnvWithout(e, "X0T_API_KEY=")
	wrong.fails("401", "mesh", "list", "--api-key", "x0t_key_wrong")
	wrong.fails("no API key", "mesh", "list")
	e.fails("required flag", "token", "list")

	// Graceful shutdown on SIGTERM.
	e.proc.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- e.proc.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("control serve after SIGTERM: %v\n%s", err, e.logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("control serve did not stop on SIGTERM")
	}
}

func cliEnvWithout(e *cliEnv, prefix string) *cliEnv {
	c := *e
	c.env = nil
	for _, v := range e.env {
		if !strings.HasPrefix(v, prefix) {
			c.env = append(c.env, v)
		}
	}
	return &c
}

func certSHA(t *testing.T, dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	sum := sha256.Sum256(blk.Bytes)
	return hex.EncodeToString(sum[:])
}
