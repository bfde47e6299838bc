package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/e2e/netns"
	"github.com/x0tta6bl4/x0t/localapi"
)

// TestBusyPoll runs the line alpha–beta–gamma in the low-latency mode, alpha
// and gamma configured by the busy_poll key and the relay beta by the
// --busy-poll flag: echoes arriving within the window are taken by polling,
// on the relay too; an idle node stops polling (no CPU burnt between
// conversations, though link probes keep coming); SIGTERM ends a node while
// it polls.
func TestBusyPoll(t *testing.T) {
	const window = 200 * time.Millisecond
	env := netns.New(t)
	byName, nodes := buildMesh(t, env, []string{"alpha", "beta", "gamma"}, [][2]int{{0, 1}, {1, 2}})
	a, b, c := byName["alpha"], byName["beta"], byName["gamma"]
	for _, n := range []*meshNode{a, c} {
		f, err := os.OpenFile(n.config, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "busy_poll: %v\n", window)
		f.Close()
		n.start(env)
	}
	b.proc = env.Start(b.ns, x0tBin, "node", "up", "--config", b.config, "--busy-poll", window.String())
	if via := a.waitRoute(t, "gamma", 20*time.Second); via != "beta" {
		t.Fatalf("alpha routes to gamma via %s", via)
	}
	waitPing(t, a.ns, c.v4, 15*time.Second)

	counters := func(n *meshNode) map[string]uint64 {
		t.Helper()
		out := env.MustRun(n.ns, x0tBin, "status", "--json", "--socket", n.socket)
		var st localapi.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%s status: %v\n%s", n.name, err, out)
		}
		return st.Counters
	}

	t.Run("echoes within the window are polled for", func(t *testing.T) {
		before := map[*meshNode]uint64{}
		for _, n := range nodes {
			before[n] = counters(n)["BusyPollReady"]
		}
		const pings = 20
		env.MustRun(a.ns, "ping", "-n", "-q", "-c", strconv.Itoa(pings), "-i", "0.05", "-W", "1", c.v4.String())
		for _, n := range nodes {
			// Request and reply each pass every node's inbound loop once,
			// and the ends' outbound loops: every node polls for each echo.
			if got := counters(n)["BusyPollReady"] - before[n]; got < pings {
				t.Errorf("%s: %d polls saw a packet during %d echoes 50 ms apart; want at least %d", n.name, got, pings, pings)
			}
		}
	})

	t.Run("an idle node stops polling", func(t *testing.T) {
		// Link probes (every 50 ms) keep arriving but do not reopen the
		// window; only user traffic does.
		time.Sleep(2 * window)
		for _, n := range nodes {
			c0, err := cpuTicks(n.proc.PID())
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			c1, _ := cpuTicks(n.proc.PID())
			// A node that kept polling would use a whole CPU or two: 100 to
			// 200 ticks at the usual 100 Hz.
			if c1-c0 > 30 {
				t.Errorf("%s used %d clock ticks of CPU in an idle second", n.name, c1-c0)
			}
			if counters(n)["BusyPollExpired"] == 0 {
				t.Errorf("%s: no poll window ever closed", n.name)
			}
		}
	})

	t.Run("SIGTERM while polling", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		flood := a.ns.Command(ctx, "ping", "-n", "-q", "-i", "0.01", "-c", "1000", c.v4.String())
		if err := flood.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); flood.Wait() }()
		time.Sleep(300 * time.Millisecond)
		for _, n := range nodes {
			start := time.Now()
			if err := n.proc.Stop(10 * time.Second); err != nil {
				t.Fatalf("%s: exit after SIGTERM: %v\n%s", n.name, err, n.proc.Output())
			}
			t.Logf("%s stopped in %v", n.name, time.Since(start).Round(time.Millisecond))
		}
	})
}

// cpuTicks returns the user and system CPU time of process pid, in clock
// ticks (/proc/PID/stat fields 14 and 15).
func cpuTicks(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which may contain spaces, in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.Atoi(f[11])
	s, err2 := strconv.Atoi(f[12])
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return u + s, nil
}
