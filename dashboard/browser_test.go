package dashboard_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/lab"
)

const chromium = "/usr/bin/chromium"

// unavailable skips the test, except under CI=true, where a browser test
// that did not run is a failure (as root-only tests are: scripts/test).
func unavailable(t *testing.T, format string, a ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, a...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("browser test can not run under CI=true: %s", msg)
	}
	t.Skip("browser test skipped: " + msg)
}

// shotsDir is where the screenshots go: the run's artifacts directory when
// scripts/test set one, else test-artifacts/dashboard at the repository root.
func shotsDir(t *testing.T) string {
	if d := os.Getenv("X0T_TEST_ARTIFACTS"); d != "" {
		return filepath.Join(d, "dashboard")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "test-artifacts", "dashboard")
}

// npmInstall installs playwright-core (no browser) into testdata/browser
// once; node_modules is kept for later runs.
func npmInstall(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	// playwright-core downloads nothing on install; make sure of it.
	cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
}

// TestBrowser drives the dashboard in headless Debian chromium through
// playwright-core: it signs in, creates a mesh and a join token in the
// browser; the test joins three netstack nodes with that token; the
// browser sees them come online, sees the link the test cuts turn red
// (and green again when mended) without a reload, validates, tests and
// saves an ACL, and verifies the audit chain. A screenshot of each page is
// saved (see shotsDir).
func TestBrowser(t *testing.T) {
	if testing.Short() {
		unavailable(t, "-short")
	}
	if _, err := os.Stat(chromium); err != nil {
		unavailable(t, "%s is not installed (apt-get install chromium)", chromium)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable(t, "node is not installed")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		unavailable(t, "npm is not installed")
	}
	script, err := filepath.Abs(filepath.Join("testdata", "browser"))
	if err != nil {
		t.Fatal(err)
	}
	npmInstall(t, script)

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cp, err := lab.StartControlPlane(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	key, err := os.ReadFile(filepath.Join(dir, "control", "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	shots := shotsDir(t)
	os.RemoveAll(shots)

	cmd := exec.CommandContext(ctx, node, filepath.Join(script, "run.mjs"))
	cmd.Dir = script
	cmd.Env = append(os.Environ(), "X0T_URL="+cp.URL, "X0T_KEY="+strings.TrimSpace(string(key)),
		"X0T_SHOTS="+shots, "X0T_MESH=lab")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*lab.Node{}
	defer cancel() // first: stops the traffic before the nodes
	defer func() {
		for _, n := range nodes {
			n.Stop()
		}
	}()
	reply := func(w io.Writer) { fmt.Fprintln(w, "ok") }
	done := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "log":
			t.Log(strings.TrimPrefix(line, "log "))
			continue
		case "token":
			if len(f) != 2 {
				t.Fatalf("bad line %q", line)
			}
			for _, name := range []string{"a", "b", "c"} {
				n, err := cp.Join(ctx, f[1], name)
				if err != nil {
					t.Fatalf("join %s with the token made in the browser: %v", name, err)
				}
				nodes[name] = n
			}
			t.Logf("nodes a, b, c joined with the browser's token")
			go traffic(ctx, nodes["a"], nodes["b"], nodes["c"])
		case "cut", "mend":
			a, b := nodes[f[1]], nodes[f[2]]
			if len(f) != 3 || a == nil || b == nil {
				t.Fatalf("bad line %q", line)
			}
			if f[0] == "cut" {
				cp.Cut(a, b)
			} else {
				cp.Mend(a, b)
			}
			t.Logf("%s %s–%s", f[0], f[1], f[2])
		case "done":
			done = true
			stdin.Close()
			continue
		default:
			t.Logf("browser: %s", line)
			continue
		}
		reply(stdin)
	}
	stdin.Close()
	err = cmd.Wait()
	if err != nil || !done {
		t.Fatalf("browser script: %v (done=%v)\n%s\nscreenshots in %s", err, done, stderr.String(), shots)
	}
	t.Logf("browser test passed in %s; screenshots in %s", time.Since(start).Round(time.Second), shots)
}

// traffic sends UDP echo round trips between every pair of nodes through
// the overlay until ctx ends, so that the dashboard has traffic to show.
func traffic(ctx context.Context, nodes ...*lab.Node) {
	for seq := 0; ctx.Err() == nil; seq++ {
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b {
					pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
					a.Ping(pctx, b, seq%2 == 1, seq)
					cancel()
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}
