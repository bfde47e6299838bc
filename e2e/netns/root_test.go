package netns

// Self-tests against the real kernel. They need root: New skips without it and
// fails under CI=true.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/internal/testutil"
)

// twoNodes builds a <-veth0-> b with IPv4 and IPv6 on both ends.
func twoNodes(t *testing.T) (env *Env, a, b *NS) {
	t.Helper()
	env = New(t)
	a, b = env.NewNS("a"), env.NewNS("b")
	env.Veth(
		End{NS: a, Dev: "veth0", Addrs: []string{"10.231.0.1/24", "fd31::1/64"}},
		End{NS: b, Dev: "veth0", Addrs: []string{"10.231.0.2/24", "fd31::2/64"}},
	)
	return env, a, b
}

// pings are the four directed pings across the pair.
var pings = []struct {
	from string // "a" or "b"
	to   string
}{
	{"a", "10.231.0.2"}, {"a", "fd31::2"}, {"b", "10.231.0.1"}, {"b", "fd31::1"},
}

func pingAll(ctx context.Context, a, b *NS) error {
	var errs []error
	for _, p := range pings {
		src := a
		if p.from == "b" {
			src = b
		}
		if err := src.Ping(ctx, p.to); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func TestTopology(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	env, a, b := twoNodes(t)
	ctx := t.Context()

	for _, ns := range []*NS{a, b} {
		if !strings.HasPrefix(ns.Name, Prefix+env.ID()+"-") {
			t.Errorf("namespace %q does not start with %q", ns.Name, Prefix+env.ID()+"-")
		}
		if _, err := os.Stat(filepath.Join(runDir, ns.Name)); err != nil {
			t.Errorf("namespace %s: %v", ns.Name, err)
		}
	}

	if err := pingAll(ctx, a, b); err != nil {
		t.Fatalf("ping across a fresh veth: %v", err)
	}

	env.SetLinkDown(a, "veth0")
	for _, p := range pings {
		src := a
		if p.from == "b" {
			src = b
		}
		if err := src.Ping(ctx, p.to); err == nil {
			t.Errorf("ping %s -> %s succeeded with the link down", p.from, p.to)
		}
	}

	env.SetLinkUp(a, "veth0")
	// Carrier comes back asynchronously; the first ping may race it.
	upCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := Poll(upCtx, 100*time.Millisecond, func() error { return pingAll(upCtx, a, b) }); err != nil {
		t.Fatalf("ping after link up again (IPv6 addresses must survive the cut): %v", err)
	}

	got, err := b.Addrs(ctx, "veth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.231.0.2/24", "fd31::2/64"} {
		if !containsPrefix(got, netip.MustParsePrefix(want)) {
			t.Errorf("Addrs(b, veth0) = %v, missing %s", got, want)
		}
	}
}

func containsPrefix(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// sameNetNS reports whether process pid lives in the namespace called name.
func sameNetNS(t *testing.T, pid int, name string) bool {
	t.Helper()
	var want, got syscall.Stat_t
	if err := syscall.Stat(filepath.Join(runDir, name), &want); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &got); err != nil {
		t.Fatal(err)
	}
	return want.Dev == got.Dev && want.Ino == got.Ino
}

// groupMembers lists live (non-zombie) processes in process group pgid.
func groupMembers(pgid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 3 || fields[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(fields[2]); g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

func TestProcess(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	env := New(t)
	a := env.NewNS("a")

	t.Run("RunsInNamespaceAndKill", func(t *testing.T) {
		p := env.Start(a, "sleep", "300")
		// The PID we hold becomes sleep itself (ip netns exec execs in place, after
		// setns; a moment after Start it may still be ip), in a's namespace.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := Poll(ctx, 5*time.Millisecond, func() error {
			comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.PID()))
			if err != nil || strings.TrimSpace(string(comm)) != "sleep" {
				return fmt.Errorf("/proc/%d/comm = %q, %v; want sleep", p.PID(), comm, err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !sameNetNS(t, p.PID(), a.Name) {
			t.Errorf("pid %d is not in namespace %s", p.PID(), a.Name)
		}
		if exited, _ := p.Exited(); exited {
			t.Fatal("sleep exited early")
		}
		err := p.Kill()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("Kill: Wait error = %v, want killed by SIGKILL", err)
		}
		if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("Signal after exit = %v, want os.ErrProcessDone", err)
		}
	})

	t.Run("OutputAndExitCode", func(t *testing.T) {
		p := env.Start(a, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
		if err := p.Wait(); exitCode(err) != 3 {
			t.Errorf("Wait = %v, want exit status 3", err)
		}
		out := p.Output()
		if !strings.Contains(out, "to-stdout") || !strings.Contains(out, "to-stderr") {
			t.Errorf("Output = %q, want both streams", out)
		}
	})

	t.Run("StopGraceful", func(t *testing.T) {
		p := env.Start(a, "sh", "-c", `trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done`)
		waitOutput(t, p, "ready") // the trap must be installed before we signal
		if err := p.Stop(5 * time.Second); err != nil {
			t.Errorf("Stop of a process that exits 0 on SIGTERM = %v, want nil", err)
		}
		if !strings.Contains(p.Output(), "bye") {
			t.Errorf("the SIGTERM handler did not run: %q", p.Output())
		}
	})

	t.Run("StopStubbornKillsGroup", func(t *testing.T) {
		// Ignores SIGTERM and has a child that would outlive it.
		p := env.Start(a, "sh", "-c", `trap '' TERM; sleep 300 & echo ready; wait`)
		waitOutput(t, p, "ready")
		if n := len(groupMembers(p.PID())); n < 2 {
			t.Fatalf("expected shell and sleep in group %d, found %d", p.PID(), n)
		}
		start := time.Now()
		err := p.Stop(200 * time.Millisecond)
		if err == nil {
			t.Error("Stop of a process that ignores SIGTERM returned nil")
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Stop took %v", d)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := Poll(ctx, 20*time.Millisecond, func() error {
			if m := groupMembers(p.PID()); len(m) > 0 {
				return fmt.Errorf("group %d still has %v", p.PID(), m)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	})
}

func waitOutput(t *testing.T, p *Proc, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := Poll(ctx, 10*time.Millisecond, func() error {
		if !strings.Contains(p.Output(), s) {
			return fmt.Errorf("no %q in output of %s yet", s, p.Label)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// assertGone checks that namespaces and processes are gone, as `ip netns list` and
// /proc see it.
func assertGone(t *testing.T, id string, names []string, pids []int) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, id) {
			t.Errorf("namespace left behind: %q", line)
		}
	}
	for _, n := range names {
		if !strings.Contains(n, id) {
			t.Errorf("namespace %q does not carry the Env id %q", n, id)
		}
		if _, err := os.Stat(filepath.Join(runDir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s/%s still there (%v)", runDir, n, err)
		}
	}
	for _, pid := range pids {
		if len(groupMembers(pid)) > 0 {
			t.Errorf("process group %d still alive", pid)
		}
	}
}

func TestCleanup(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	var (
		id    string
		names []string
		pids  []int
	)
	t.Run("Build", func(t *testing.T) {
		env, a, b := twoNodes(t)
		id = env.ID()
		names = []string{a.Name, b.Name}
		pids = append(pids, env.Start(a, "sleep", "300").PID(), env.Start(b, "sleep", "300").PID())
	})
	assertGone(t, id, names, pids)
}

// TestFailingHelper is run by TestCleanupAfterFailure in a child process; in a
// normal run it does nothing.
func TestFailingHelper(t *testing.T) {
	if os.Getenv("X0T_NETNS_HELPER") != "1" {
		return
	}
	env, a, b := twoNodes(t)
	p := env.Start(a, "sh", "-c", "echo marker-from-child; exec sleep 300")
	q := env.Start(b, "sh", "-c", "trap '' TERM; sleep 300 & wait")
	waitOutput(t, p, "marker-from-child")
	fmt.Printf("STATE id=%s ns=%s,%s pids=%d,%d\n", env.ID(), a.Name, b.Name, p.PID(), q.PID())
	t.Fatal("deliberate failure")
}

func TestCleanupAfterFailure(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestFailingHelper$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "X0T_NETNS_HELPER=1")
	out, err := cmd.CombinedOutput()
	if exitCode(err) == 0 {
		t.Fatalf("helper test should have failed; err=%v, output:\n%s", err, out)
	}
	for _, want := range []string{"deliberate failure", "netns: state of", "10.231.0.1/24", "marker-from-child"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q (diagnostics on failure):\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`STATE id=(\S+) ns=(\S+),(\S+) pids=(\d+),(\d+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no STATE line in child output:\n%s", out)
	}
	p1, _ := strconv.Atoi(m[4])
	p2, _ := strconv.Atoi(m[5])
	assertGone(t, m[1], []string{m[2], m[3]}, []int{p1, p2})
}

func TestStaleSweep(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s%d-abcdef-stale", Prefix, dead.Process.Pid)
	live := fmt.Sprintf("%s%d-abcdef-live", Prefix, os.Getpid())
	for _, n := range []string{stale, live} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", n, err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n).Run() })
	}
	if processAlive(dead.Process.Pid) {
		t.Skipf("pid %d was reused at once; cannot test the sweep", dead.Process.Pid)
	}

	New(t)

	if _, err := os.Stat(filepath.Join(runDir, stale)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale namespace %s not swept (%v)", stale, err)
	}
	if _, err := os.Stat(filepath.Join(runDir, live)); err != nil {
		t.Errorf("namespace %s of a live process was touched: %v", live, err)
	}
}
