// Package netns builds throwaway Linux network-namespace topologies for root-only
// end-to-end tests: uniquely named namespaces, veth pairs with addresses, link cuts,
// commands and long-running processes inside a namespace, and a cleanup that kills
// every process it started and deletes every namespace even when the test fails.
//
// Typical use:
//
//	env := netns.New(t) // skips without root (fails under CI=true); registers Cleanup
//	a, b := env.NewNS("a"), env.NewNS("b")
//	env.Veth(netns.End{NS: a, Dev: "veth0", Addrs: []string{"10.99.0.1/24", "fd99::1/64"}},
//		netns.End{NS: b, Dev: "veth0", Addrs: []string{"10.99.0.2/24", "fd99::2/64"}})
//	node := env.Start(a, "/path/to/x0t", "node", "up", "--config", cfg)
//	env.SetLinkDown(a, "veth0") // cut the link ...
//	env.SetLinkUp(a, "veth0")   // ... and restore it
//	_ = node.Stop(5 * time.Second)
//
// The package shells out to iproute2's `ip` instead of driving netlink and setns(2)
// from the test process. Running something inside a namespace needs a separate
// process anyway (`ip netns exec`), so iproute2 is a hard dependency whatever we do;
// with `ip` for the topology too, the test process itself never changes namespace,
// so there is no LockOSThread/setns hazard for the Go runtime (a goroutine that
// forgets to switch back silently runs later code in the wrong namespace), a failing
// step prints the same message an operator would see at a shell, and the helper adds
// no dependency to go.mod. The cost, a few milliseconds per command, is irrelevant
// next to what the tests themselves do.
//
// Names are "x0t-<pid>-<6 hex>-<label>": the pid and random part keep parallel
// test binaries (go test runs packages in parallel) and parallel tests apart, and
// let New sweep namespaces left behind by a test binary that died without running
// its cleanups (a go test timeout panics past t.Cleanup).
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/internal/testutil"
)

// Prefix starts the name of every namespace this package creates.
const Prefix = "x0t-"

// runDir is where `ip netns add` keeps its bind mounts, one file per namespace.
const runDir = "/run/netns"

// cmdTimeout caps MustRun and the helper's own `ip` calls, so a wedged command fails
// the test instead of hanging until go test's global timeout, which would skip cleanup.
const cmdTimeout = 2 * time.Minute

// Env owns a set of namespaces and processes for one test. The methods that set
// things up (NewNS, Veth, AddAddr, SetLink*, MustRun, Start*) report errors with
// Fatalf on the t given to New, so call them from that test's goroutine, not from
// its subtests or other goroutines. The rest (NS.Run, NS.Ping, NS.Addrs, the Proc
// methods, Poll) return errors and may be used anywhere.
type Env struct {
	t      testing.TB
	id     string // "<pid>-<6 hex>", shared by this Env's namespaces
	logDir string

	mu     sync.Mutex
	nss    []*NS
	procs  []*Proc
	pairs  [][2]End // veth pairs, to find the peer of a link that goes up or down
	nlog   int
	closed bool
}

// NS is one network namespace created by an Env.
type NS struct {
	// Name is the name given to `ip netns`, e.g. "x0t-4242-a1b2c3-a".
	Name string
	env  *Env
}

// End is one side of a veth pair.
type End struct {
	NS  *NS
	Dev string // interface name inside NS, at most 15 bytes
	// Addrs are CIDR prefixes to assign, IPv4 or IPv6 ("10.99.0.1/24", "fd99::1/64").
	// IPv6 ones are added with nodad, so they are usable at once.
	Addrs []string
}

// New returns an Env for t. It calls testutil.RequireRoot (skip without root, fail
// under CI=true), checks that `ip` is present, removes namespaces leaked by earlier
// test binaries that no longer run, and registers Cleanup with t.Cleanup.
//
// Process logs go to a per-test temporary directory, or, when X0T_TEST_ARTIFACTS
// names a directory, below it, so CI can keep them after the run.
func New(t testing.TB) *Env {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("netns: iproute2 `ip` not found: %v", err)
	}
	sweepStale(t)

	e := &Env{t: t}
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatalf("netns: random: %v", err)
	}
	e.id = strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(suffix)

	if dir := os.Getenv("X0T_TEST_ARTIFACTS"); dir != "" {
		e.logDir = filepath.Join(dir, sanitize(t.Name())+"-"+e.id)
		if err := os.MkdirAll(e.logDir, 0o755); err != nil {
			t.Fatalf("netns: artifacts dir: %v", err)
		}
	} else {
		e.logDir = t.TempDir()
	}
	// Registered after t.TempDir, so it runs first (cleanups run last-in first-out):
	// processes die before their log directory is removed.
	t.Cleanup(e.Cleanup)
	return e
}

// ID is the "<pid>-<hex>" part shared by the names of this Env's namespaces.
func (e *Env) ID() string { return e.id }

// LogDir is the directory holding the output of processes started by Start.
func (e *Env) LogDir() string { return e.logDir }

// NewNS creates a namespace named Prefix+ID()+"-"+label with lo up, and with
// keep_addr_on_down set so that SetLinkDown/SetLinkUp keep IPv6 addresses (by
// default the kernel flushes them when a link goes down, which would make a link
// cut permanent for IPv6).
func (e *Env) NewNS(label string) *NS {
	e.t.Helper()
	if label == "" || strings.ContainsAny(label, "/ \t\n") {
		e.t.Fatalf("netns: bad label %q", label)
	}
	ns := &NS{Name: Prefix + e.id + "-" + label, env: e}

	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		e.t.Fatalf("netns: NewNS after Cleanup")
	}
	for _, o := range e.nss {
		if o.Name == ns.Name {
			e.mu.Unlock()
			e.t.Fatalf("netns: label %q used twice", label)
		}
	}
	e.mu.Unlock()

	e.ip("netns", "add", ns.Name)
	// Track it before anything else can fail, so Cleanup deletes it.
	e.mu.Lock()
	e.nss = append(e.nss, ns)
	e.mu.Unlock()

	e.MustRun(ns, "sysctl", "-q", "-w",
		"net.ipv6.conf.all.keep_addr_on_down=1",
		"net.ipv6.conf.default.keep_addr_on_down=1")
	e.ip("-n", ns.Name, "link", "set", "lo", "up")
	return ns
}

// Veth creates a veth pair with one end in each namespace, assigns the addresses,
// brings both ends up and returns once the kernel reports both operational (see
// waitOper), so the first packet gets through. The pair is created directly inside
// the namespaces (never in the host namespace), so equal device names in parallel
// tests do not clash.
func (e *Env) Veth(a, b End) {
	e.t.Helper()
	for _, end := range []End{a, b} {
		if end.NS == nil || end.NS.env != e {
			e.t.Fatalf("netns: veth end %q: namespace missing or from another Env", end.Dev)
		}
		if len(end.Dev) == 0 || len(end.Dev) > 15 {
			e.t.Fatalf("netns: bad device name %q (1..15 bytes)", end.Dev)
		}
	}
	e.ip("-n", a.NS.Name, "link", "add", a.Dev, "type", "veth",
		"peer", "name", b.Dev, "netns", b.NS.Name)
	e.mu.Lock()
	e.pairs = append(e.pairs, [2]End{a, b})
	e.mu.Unlock()
	for _, end := range []End{a, b} {
		e.AddAddr(end.NS, end.Dev, end.Addrs...)
		e.ip("-n", end.NS.Name, "link", "set", "dev", end.Dev, "up")
	}
	e.waitOper(a, b)
}

// AddAddr assigns CIDR prefixes to dev in ns; IPv6 ones with nodad.
func (e *Env) AddAddr(ns *NS, dev string, prefixes ...string) {
	e.t.Helper()
	for _, p := range prefixes {
		args, err := addrArgs(ns.Name, dev, p)
		if err != nil {
			e.t.Fatalf("netns: %v", err)
		}
		e.ip(args...)
	}
}

// addrArgs builds the `ip` arguments that add prefix p to dev in namespace nsName.
func addrArgs(nsName, dev, p string) ([]string, error) {
	pfx, err := netip.ParsePrefix(p)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", p, err)
	}
	args := []string{"-n", nsName, "addr", "add", pfx.String(), "dev", dev}
	if pfx.Addr().Is6() {
		// Skip duplicate address detection: otherwise the address stays
		// "tentative" for a second or more and early packets fail.
		args = append(args, "nodad")
	}
	return args, nil
}

// SetLinkUp brings dev in ns up. For a veth made by Veth it returns once both
// ends are operational (see waitOper), so the next packet gets through.
func (e *Env) SetLinkUp(ns *NS, dev string) {
	e.t.Helper()
	e.ip("-n", ns.Name, "link", "set", "dev", dev, "up")
	e.waitOper(e.ends(ns, dev)...)
}

// SetLinkDown brings dev in ns down: for a veth this cuts the link in both
// directions (the peer loses carrier). Addresses survive (see NewNS); routes that
// were added by hand through dev do not, as always with Linux.
func (e *Env) SetLinkDown(ns *NS, dev string) {
	e.t.Helper()
	e.ip("-n", ns.Name, "link", "set", "dev", dev, "down")
	e.waitOper(e.ends(ns, dev)...)
}

// ends returns dev in ns and, if it is one end of a pair made by Veth, the other.
func (e *Env) ends(ns *NS, dev string) []End {
	ends := []End{{NS: ns, Dev: dev}}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.pairs {
		for i, end := range p {
			if end.NS == ns && end.Dev == dev {
				ends = append(ends, p[1-i])
			}
		}
	}
	return ends
}

// linkState is the part of `ip -j link show dev X` that waitOper needs.
type linkState struct {
	Flags     []string `json:"flags"`
	OperState string   `json:"operstate"`
}

// settled reports whether the kernel has finished taking a veth end up or down:
// operational when both ends are administratively up, not operational otherwise.
func (s linkState) settled(bothUp bool) bool {
	return (s.OperState == "UP") == bothUp
}

// waitOper waits until both ends of a veth pair are operational if both are
// administratively up, and until neither is otherwise.
//
// Why: carrier changes reach the rest of the stack through the kernel's linkwatch
// work, which is deferred by up to a second. Until it runs, a freshly raised veth
// has no transmit queue, so e.g. a neighbour advertisement is dropped and the
// first IPv6 ping after Veth or SetLinkUp is lost. Asking for the link state by
// name (RTM_GETLINK) also makes the kernel process that pending work at once, so
// this usually returns after one round of `ip` calls.
func (e *Env) waitOper(ends ...End) {
	e.t.Helper()
	if len(ends) == 1 {
		// Not a veth we made: there is no rule for what it should become (a TUN
		// without its process stays down), so only nudge linkwatch, once.
		_ = exec.Command("ip", "-n", ends[0].NS.Name, "link", "show", "dev", ends[0].Dev).Run()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var states []linkState
	err := Poll(ctx, 10*time.Millisecond, func() error {
		states = states[:0]
		for _, end := range ends {
			out, err := exec.CommandContext(ctx, "ip", "-n", end.NS.Name, "-j", "link", "show", "dev", end.Dev).Output()
			if err != nil {
				return fmt.Errorf("ip -n %s link show dev %s: %w", end.NS.Name, end.Dev, err)
			}
			var ls []linkState
			if err := json.Unmarshal(out, &ls); err != nil || len(ls) != 1 {
				return fmt.Errorf("ip -j link show dev %s: bad output %q", end.Dev, out)
			}
			states = append(states, ls[0])
		}
		// A veth end is operational only if both ends are administratively up.
		bothUp := true
		for _, s := range states {
			bothUp = bothUp && slices.Contains(s.Flags, "UP")
		}
		for i, s := range states {
			if !s.settled(bothUp) {
				return fmt.Errorf("%s in %s: flags %v, operstate %s", ends[i].Dev, ends[i].NS.Name, s.Flags, s.OperState)
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("netns: link state did not settle: %v", err)
	}
}

// ip runs iproute2 in the host's context (namespaces are selected with -n) and
// fails the test on error.
func (e *Env) ip(args ...string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("netns: ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// Command returns a command that runs name with args inside ns, via
// `ip netns exec`. ip execs the command in place, so the started process's PID is
// the command's own. The process gets SIGKILL if the test binary dies.
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if ctx == nil {
		ctx = context.Background()
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// If the command leaves a child holding stdout open, Wait would block forever.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs name with args inside ns and returns its combined output. The error,
// if any, includes the output.
func (ns *NS) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := ns.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s %s: %w: %s",
			ns.Name, name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// MustRun runs name with args inside ns (for at most two minutes) and returns its
// combined output; it fails the test if the command fails.
func (e *Env) MustRun(ns *NS, name string, args ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := ns.Run(ctx, name, args...)
	if err != nil {
		e.t.Fatalf("netns: %v", err)
	}
	return out
}

// Ping sends one echo request to addr (IPv4 or IPv6) from ns and waits up to
// one second for the reply.
func (ns *NS) Ping(ctx context.Context, addr string) error {
	_, err := ns.Run(ctx, "ping", "-n", "-q", "-c", "1", "-W", "1", addr)
	return err
}

// Addrs lists the addresses on dev in ns, e.g. to find the IPv6 ULA a node put on
// its TUN:
//
//	for _, p := range addrs { if p.Addr().Is6() && !p.Addr().IsLinkLocalUnicast() { ... } }
func (ns *NS) Addrs(ctx context.Context, dev string) ([]netip.Prefix, error) {
	out, err := ns.Run(ctx, "ip", "-j", "addr", "show", "dev", dev)
	if err != nil {
		return nil, err
	}
	return parseAddrs([]byte(out))
}

// parseAddrs decodes `ip -j addr show` output.
func parseAddrs(js []byte) ([]netip.Prefix, error) {
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(js, &links); err != nil {
		return nil, fmt.Errorf("parse ip -j addr: %w", err)
	}
	var out []netip.Prefix
	for _, l := range links {
		for _, a := range l.AddrInfo {
			addr, err := netip.ParseAddr(a.Local)
			if err != nil {
				return nil, fmt.Errorf("parse ip -j addr: %w", err)
			}
			p, err := addr.Prefix(a.PrefixLen)
			if err != nil {
				return nil, fmt.Errorf("parse ip -j addr: %w", err)
			}
			// Keep the host address, not the masked network.
			out = append(out, netip.PrefixFrom(addr, p.Bits()))
		}
	}
	return out, nil
}

// Poll calls fn every interval until it returns nil or ctx is done; then it returns
// the last error of fn joined with the context's. For the few places where an
// end-to-end test must wait for the outside world (a device to appear, a tunnel to
// come up); everything else should not sleep.
func Poll(ctx context.Context, interval time.Duration, fn func() error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-tick.C:
		}
	}
}

// Cleanup stops every process started by Start (SIGTERM, then SIGKILL to its
// process group) and deletes every namespace, reporting failures with t.Errorf.
// New registers it with t.Cleanup; calling it again does nothing. When the test
// has failed it first logs each namespace's addresses and routes and the tail of
// each process's output, while the processes still run.
func (e *Env) Cleanup() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	nss, procs := e.nss, e.procs
	e.mu.Unlock()

	if e.t.Failed() {
		e.dumpDiagnostics(nss, procs)
	}

	// Stop them all at once: a grace period each, one after another, adds up.
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.Stop(2 * time.Second) // exit status is not interesting here
		}()
	}
	wg.Wait()

	for _, ns := range nss {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		out, err := exec.CommandContext(ctx, "ip", "netns", "del", ns.Name).CombinedOutput()
		cancel()
		if err != nil {
			e.t.Errorf("netns: cleanup: ip netns del %s: %v: %s", ns.Name, err, bytes.TrimSpace(out))
		}
	}
}

// dumpDiagnostics logs the state of a failed test's topology.
func (e *Env) dumpDiagnostics(nss []*NS, procs []*Proc) {
	for _, ns := range nss {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var b strings.Builder
		for _, args := range [][]string{
			{"-br", "addr"}, {"route"}, {"-6", "route"},
		} {
			out, _ := ns.Run(ctx, "ip", args...)
			fmt.Fprintf(&b, "$ ip %s\n%s", strings.Join(args, " "), out)
		}
		cancel()
		e.t.Logf("netns: state of %s:\n%s", ns.Name, b.String())
	}
	for _, p := range procs {
		e.t.Logf("netns: output of %s (pid %d, %s):\n%s", p.Label, p.PID(), p.LogPath, tail(p.Output(), 8<<10))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]" + s[len(s)-n:]
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// sanitize turns a test name into a file name.
func sanitize(s string) string { return unsafeChars.ReplaceAllString(s, "_") }

// staleName matches the names New gives and captures the creating pid.
var staleName = regexp.MustCompile(`^` + regexp.QuoteMeta(Prefix) + `([0-9]+)-[0-9a-f]{6}-`)

// stalePID returns the pid of the test binary that created namespace name, if
// name has the form this package gives.
func stalePID(name string) (int, bool) {
	m := staleName.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// sweepStale deletes namespaces named by this package whose creating process is
// gone: a go test timeout panics without running t.Cleanup, and the leaked
// namespaces would otherwise pile up. Processes inside them died with their
// parent (Pdeathsig). A namespace of a live process is never touched.
func sweepStale(t testing.TB) {
	t.Helper()
	entries, err := os.ReadDir(runDir)
	if err != nil {
		return // no namespaces at all yet
	}
	for _, ent := range entries {
		pid, ok := stalePID(ent.Name())
		if !ok || processAlive(pid) {
			continue
		}
		out, err := exec.Command("ip", "netns", "del", ent.Name()).CombinedOutput()
		if err != nil {
			t.Logf("netns: could not remove stale namespace %s: %v: %s", ent.Name(), err, bytes.TrimSpace(out))
			continue
		}
		t.Logf("netns: removed stale namespace %s (pid %d is gone)", ent.Name(), pid)
	}
}

// processAlive reports whether a process with this pid exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
