package lab_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/control"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/internal/testutil"
	"github.com/x0tta6bl4/x0t/lab"
)

// TestNoSecretInLogs runs a control plane and enrolled nodes in one process
// with every component logging at debug level, in both formats, through the
// life of a mesh: organizations and API keys, join tokens (auto-approved and
// approved by hand), enrollment, handshakes, traffic, a cut link, renewal
// of the netmap, a revoked node, refused credentials. Then it looks in the
// logs for every secret the test can know: tokens, API keys (real and
// refused ones), node private keys, the control plane's key files. None may
// appear, in any encoding.
func TestNoSecretInLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("a whole mesh")
	}
	var text, js testutil.SyncBuffer
	opts := &slog.HandlerOptions{Level: slog.LevelDebug, AddSource: true}
	logger := slog.New(slog.NewMultiHandler(slog.NewTextHandler(&text, opts), slog.NewJSONHandler(&js, opts)))

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	cp, err := lab.StartControlPlane(ctx, dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	var closeOnce sync.Once
	closeCP := func() { closeOnce.Do(cp.Close) }
	defer closeCP()
	secrets := testutil.NewSecrets()
	const shown = len("x0t_join_") + 6 // the part listings show (control.newSecret)

	// Tenancy: another organization, its owner key and a second API key.
	org, err := cp.Admin.CreateOrg(ctx, apitypes.CreateOrgRequest{Name: "tenant"})
	if err != nil {
		t.Fatal(err)
	}
	secrets.String("tenant owner API key", org.Key.Key, len("x0t_key_")+6)
	tenant, err := controlclient.New(cp.URL, controlclient.Options{APIKey: org.Key.Key, Fingerprint: cp.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	key, err := tenant.CreateKey(ctx, apitypes.CreateKeyRequest{Name: "ci", Role: "admin", TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	secrets.String("tenant second API key", key.Key, len("x0t_key_")+6)
	// A made-up key and a real one with a typo are refused, and must not be
	// echoed into the log either (someone mistyping the real key leaks most of it).
	for _, bad := range []string{"x0t_key_" + strings.Repeat("q7", 26), key.Key[:len(key.Key)-1] + "z"} {
		c, _ := controlclient.New(cp.URL, controlclient.Options{APIKey: bad, Fingerprint: cp.Fingerprint})
		if _, err := c.Whoami(ctx); err == nil {
			t.Fatalf("a wrong API key was accepted")
		}
		secrets.String("refused API key", bad, len("x0t_key_")+6)
	}

	// A mesh with an auto-approving token, nodes that join with it, and a
	// manual token whose node waits for approval.
	token, err := cp.NewMesh(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	secrets.String("join token", token, shown)
	var nodes []*lab.Node
	defer func() {
		for _, n := range nodes {
			n.Stop()
		}
	}()
	for _, name := range []string{"alpha", "beta", "gamma"} {
		n, err := cp.Join(ctx, token, name)
		if err != nil {
			t.Fatalf("join %s: %v", name, err)
		}
		nodes = append(nodes, n)
	}
	manual, err := cp.Admin.CreateToken(ctx, "m", apitypes.CreateTokenRequest{TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	secrets.String("manual join token", manual.Secret, shown)
	joined := make(chan error, 1)
	var delta *lab.Node
	go func() {
		var err error
		delta, err = cp.Join(ctx, manual.Secret, "delta")
		joined <- err
	}()
	waitPending(ctx, t, cp, "delta")
	if _, err := cp.Admin.ApproveNode(ctx, "m", "delta"); err != nil {
		t.Fatal(err)
	}
	if err := <-joined; err != nil {
		t.Fatalf("join delta: %v", err)
	}
	nodes = append(nodes, delta)
	// A used-up or mistyped token is refused; the attempt must not log it.
	typo := token[:len(token)-1] + "z"
	if typo == token {
		typo = token[:len(token)-1] + "y"
	}
	if _, err := cp.Join(ctx, typo, "mallory"); err == nil {
		t.Fatal("a mistyped join token was accepted")
	}
	secrets.String("mistyped join token", typo, shown)

	// Traffic, a cut and its healing, a revocation.
	for _, n := range nodes {
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		err := n.WaitPeers(wctx, len(nodes)-1)
		wcancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	ping := func(a, b *lab.Node) error {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		_, err := a.Ping(pctx, b, false, 1)
		return err
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				if err := ping(a, b); err != nil {
					t.Fatalf("ping %s -> %s: %v", a.Name, b.Name, err)
				}
			}
		}
	}
	cp.Cut(nodes[0], nodes[1])
	deadline := time.Now().Add(10 * time.Second)
	for ping(nodes[0], nodes[1]) != nil && time.Now().Before(deadline) {
	}
	cp.Mend(nodes[0], nodes[1])
	if _, err := cp.Admin.RevokeNode(ctx, "m", "gamma"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the revocation reaches the nodes

	// Every secret the test can reach: the nodes' private keys as kept and
	// in memory, and the control plane's secret files.
	for _, n := range nodes {
		raw, err := n.Key.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		secrets.Bytes(n.Name+" private key seeds", raw[6:]) // past the public magic and version
		secrets.Bytes(n.Name+" X25519 private key", n.Key.DH.Bytes())
		secrets.Bytes(n.Name+" ML-KEM-768 seed", n.Key.KEM.Bytes())
		file := filepath.Join(dir, "nodes", n.Name, "node.key")
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		secrets.File(n.Name+" node.key", data)
		if _, err := identity.ReadNodeKey(file); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "control")
	for _, f := range []string{control.FileSecretKey, control.FileCheckpointKey, control.FileTLSKey} {
		b, err := os.ReadFile(filepath.Join(data, f))
		if err != nil {
			t.Fatal(err)
		}
		secrets.File("control plane "+f, b)
	}
	admin, err := os.ReadFile(filepath.Join(data, control.FileAdminKey))
	if err != nil {
		t.Fatal(err)
	}
	secrets.String("first owner API key", strings.TrimSpace(string(admin)), len("x0t_key_")+6)

	closeCP() // the shutdown is logged too
	for name, out := range map[string]string{"text": text.String(), "json": js.String()} {
		// The run logged what it did, at every level, from every component.
		for _, want := range []string{"control plane listening", "node enrolled", "waiting for an administrator",
			"netmap installed", "handshake complete", "link down", "DEBUG"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s log lacks %q: the scan would prove little", name, want)
			}
		}
		for _, leak := range secrets.Find(out) {
			t.Errorf("%s log: %s", name, leak)
		}
	}
	t.Logf("looked for %d encodings of secrets in %d bytes of logs", secrets.Len(), len(text.String())+len(js.String()))
}

func waitPending(ctx context.Context, t *testing.T, cp *lab.ControlPlane, name string) {
	t.Helper()
	for {
		ns, err := cp.Admin.ListNodes(ctx, "m", "pending")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if n.Name == name {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never pending", name)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
