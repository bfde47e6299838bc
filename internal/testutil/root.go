// Package testutil holds helpers shared by tests across packages.
package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips t when not running as root, except under CI (CI=true),
// where a skipped root test would hide missing coverage, so it fails instead.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root and CI=true: refusing to skip")
	}
	t.Skip("needs root")
}
