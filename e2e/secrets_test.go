package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/x0tta6bl4/x0t/control"
	"github.com/x0tta6bl4/x0t/e2e/netns"
	"github.com/x0tta6bl4/x0t/internal/testutil"
)

// Shown parts of secrets (control.newSecret): listings and audit entries may
// show them, logs too.
const (
	shownToken  = len("x0t_join_") + 6
	shownAPIKey = len("x0t_key_") + 6
)

// controlPlaneSecrets adds the secret files of a control plane's data
// directory and its first owner's API key.
func controlPlaneSecrets(t *testing.T, s *testutil.Secrets, data string) {
	t.Helper()
	for _, f := range []string{control.FileSecretKey, control.FileCheckpointKey, control.FileTLSKey} {
		b, err := os.ReadFile(filepath.Join(data, f))
		if err != nil {
			t.Fatal(err)
		}
		s.File("control plane "+f, b)
	}
	key, err := os.ReadFile(filepath.Join(data, control.FileAdminKey))
	if err != nil {
		t.Fatal(err)
	}
	s.String("owner API key", strings.TrimSpace(string(key)), shownAPIKey)
}

// nodeSecrets adds the private key kept in a node's state directory.
func nodeSecrets(t *testing.T, s *testutil.Secrets, name, stateDir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	s.File(name+" node.key", b)
}

// assertNoSecretsInLogs fails t if the log of any process the Env started
// (control plane, nodes, helpers) holds one of the secrets, in any encoding.
func assertNoSecretsInLogs(t *testing.T, env *netns.Env, s *testutil.Secrets) {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(env.LogDir(), "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no process logs in %s: %v", env.LogDir(), err)
	}
	var size int
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		size += len(b)
		for _, leak := range s.Find(string(b)) {
			t.Errorf("%s: %s", filepath.Base(path), leak)
		}
	}
	t.Logf("no secret (%d encodings) in %d logs, %d bytes", s.Len(), len(logs), size)
}
