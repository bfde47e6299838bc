package netns

// Tests of the pure parts; they run without root.

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestAddrArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"10.99.0.1/24", []string{"-n", "ns", "addr", "add", "10.99.0.1/24", "dev", "veth0"}},
		{"fd99::1/64", []string{"-n", "ns", "addr", "add", "fd99::1/64", "dev", "veth0", "nodad"}},
		{"100.64.0.1/10", []string{"-n", "ns", "addr", "add", "100.64.0.1/10", "dev", "veth0"}},
	}
	for _, tc := range tests {
		got, err := addrArgs("ns", "veth0", tc.in)
		if err != nil {
			t.Fatalf("addrArgs(%q): %v", tc.in, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("addrArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"10.99.0.1", "fd99::1", "nonsense/24", ""} {
		if _, err := addrArgs("ns", "veth0", bad); err == nil {
			t.Errorf("addrArgs(%q): no error", bad)
		}
	}
}

func TestParseAddrs(t *testing.T) {
	// Trimmed output of `ip -j addr show dev x0t0` for a TUN with both families.
	js := `[{"ifindex":5,"ifname":"x0t0","flags":["POINTOPOINT","UP"],"mtu":1420,
	  "addr_info":[
	    {"family":"inet","local":"100.64.0.1","prefixlen":10,"scope":"global","label":"x0t0"},
	    {"family":"inet6","local":"fd7a:1:2::1","prefixlen":64,"scope":"global"},
	    {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]}]`
	got, err := parseAddrs([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("100.64.0.1/10"),
		netip.MustParsePrefix("fd7a:1:2::1/64"),
		netip.MustParsePrefix("fe80::1/64"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("parseAddrs = %v, want %v", got, want)
	}

	if got, err := parseAddrs([]byte(`[]`)); err != nil || len(got) != 0 {
		t.Errorf("parseAddrs([]) = %v, %v", got, err)
	}
	for _, bad := range []string{``, `{`, `[{"addr_info":[{"local":"x","prefixlen":1}]}]`,
		`[{"addr_info":[{"local":"10.0.0.1","prefixlen":99}]}]`} {
		if _, err := parseAddrs([]byte(bad)); err == nil {
			t.Errorf("parseAddrs(%q): no error", bad)
		}
	}
}

func TestStalePID(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		ok   bool
	}{
		{"x0t-4242-a1b2c3-a", 4242, true},
		{"x0t-1-000000-node-b", 1, true},
		{"x0t-4242-a1b2c3", 0, false},   // no label: not a name we give
		{"x0t-4242-A1B2C3-a", 0, false}, // we only write lower-case hex
		{"x0t-b4242-a", 0, false},       // scripts/lib.sh's naming, not ours
		{"x0t-a", 0, false},
		{"other-4242-a1b2c3-a", 0, false},
		{"x0t-0-a1b2c3-a", 0, false},
		{"x0t-99999999999999999999-a1b2c3-a", 0, false},
	}
	for _, tc := range tests {
		pid, ok := stalePID(tc.name)
		if pid != tc.pid || ok != tc.ok {
			t.Errorf("stalePID(%q) = %d, %v; want %d, %v", tc.name, pid, ok, tc.pid, tc.ok)
		}
	}
}

func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Error("own process not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	// Reaped a moment ago; the pid is free unless recycled within microseconds.
	if processAlive(cmd.Process.Pid) {
		t.Logf("pid %d reused already; not conclusive", cmd.Process.Pid)
	}
}

func TestSanitize(t *testing.T) {
	if got, want := sanitize("TestX/sub case#01"), "TestX_sub_case_01"; got != want {
		t.Errorf("sanitize = %q, want %q", got, want)
	}
}

func TestPoll(t *testing.T) {
	n := 0
	err := Poll(context.Background(), time.Millisecond, func() error {
		n++
		if n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("Poll = %v after %d calls, want nil after 3", err, n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errNope := errors.New("nope")
	err = Poll(ctx, time.Millisecond, func() error { return errNope })
	if !errors.Is(err, errNope) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Poll on a done context = %v, want both the last error and context.Canceled", err)
	}
}
