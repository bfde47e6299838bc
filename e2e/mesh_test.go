package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/e2e/netns"
	"github.com/x0tta6bl4/x0t/localapi"
)

// meshNode is a node of a static multi-hop mesh: it listens on 0.0.0.0:4242 and
// has its own local API socket.
type meshNode struct {
	*staticNode
	socket string
	links  map[string]string // neighbour name → its underlay address on our shared link
	devs   map[string]string // neighbour name → our veth towards it
}

// buildMesh creates namespaces, one veth per link (10.1.<i>.1 and .2), and
// configs: neighbours get endpoints, every other member none (reached
// through the mesh).
func buildMesh(t *testing.T, env *netns.Env, names []string, links [][2]int) (map[string]*meshNode, []*meshNode) {
	t.Helper()
	var nss []*netns.NS
	for _, n := range names {
		nss = append(nss, env.NewNS(n))
	}
	caDir, statics := newStaticMesh(t, nss, names...)
	nodes := make([]*meshNode, len(statics))
	byName := map[string]*meshNode{}
	for i, s := range statics {
		nodes[i] = &meshNode{staticNode: s, socket: filepath.Join(s.dir, "x0t.sock"), links: map[string]string{}, devs: map[string]string{}}
		byName[s.name] = nodes[i]
	}
	for li, l := range links {
		a, b := nodes[l[0]], nodes[l[1]]
		devA, devB := "to-"+b.name, "to-"+a.name
		env.Veth(netns.End{NS: a.ns, Dev: devA, Addrs: []string{fmt.Sprintf("10.1.%d.1/24", li+1)}},
			netns.End{NS: b.ns, Dev: devB, Addrs: []string{fmt.Sprintf("10.1.%d.2/24", li+1)}})
		a.links[b.name] = fmt.Sprintf("10.1.%d.2:4242", li+1)
		b.links[a.name] = fmt.Sprintf("10.1.%d.1:4242", li+1)
		a.devs[b.name], b.devs[a.name] = devA, devB
	}
	for _, n := range nodes {
		peers := map[*staticNode]string{}
		for _, o := range nodes {
			if o != n {
				peers[o.staticNode] = n.links[o.name]
			}
		}
		n.writeConfig(t, caDir, "0.0.0.0:4242", peers)
		f, _ := os.OpenFile(n.config, os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprintf(f, "socket: %s\n", n.socket)
		f.Close()
		// Less log noise than the two-node tests.
		cfg, _ := os.ReadFile(n.config)
		os.WriteFile(n.config, []byte(strings.Replace(string(cfg), "log_level: debug", "log_level: info", 1)), 0o644)
	}
	return byName, nodes
}

// routeVia asks a node (through `x0t routes --json`) for its next hop to dst.
func (n *meshNode) routeVia(ctx context.Context, dst string) (string, error) {
	out, err := n.ns.Run(ctx, x0tBin, "routes", "--json", "--socket", n.socket)
	if err != nil {
		return "", err
	}
	var r localapi.Routes
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return "", err
	}
	for _, ri := range r.Routes {
		if ri.Dest == dst {
			return ri.Next, nil
		}
	}
	return "", fmt.Errorf("%s has no route to %s:\n%s", n.name, dst, out)
}

func (n *meshNode) waitRoute(t *testing.T, dst string, within time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var via string
	if err := netns.Poll(ctx, 100*time.Millisecond, func() (err error) {
		via, err = n.routeVia(ctx, dst)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return via
}

// TestMeshLineRelay is issue 4's first end-to-end check: line alpha–beta–gamma
// with no alpha–gamma link. alpha pings gamma and moves 16 MiB to it, through
// beta, with matching SHA-256.
func TestMeshLineRelay(t *testing.T) {
	env := netns.New(t)
	byName, nodes := buildMesh(t, env, []string{"alpha", "beta", "gamma"}, [][2]int{{0, 1}, {1, 2}})
	for _, n := range nodes {
		n.start(env)
	}
	a, c := byName["alpha"], byName["gamma"]
	if via := a.waitRoute(t, "gamma", 20*time.Second); via != "beta" {
		t.Fatalf("alpha routes to gamma via %s", via)
	}
	waitPing(t, a.ns, c.v4, 15*time.Second)
	waitPing(t, c.ns, a.v6, 10*time.Second)
	d := transfer(t, env, a.ns, c.ns, c.v4, 16<<20)
	t.Logf("16 MiB alpha -> gamma through beta in %v", d.Round(time.Millisecond))

	// The status and health commands answer from every node.
	out := env.MustRun(a.ns, x0tBin, "status", "--socket", a.socket)
	if !strings.Contains(out, "gamma") || !strings.Contains(out, "mesh") {
		t.Errorf("x0t status on alpha:\n%s", out)
	}
	out = env.MustRun(byName["beta"].ns, x0tBin, "health", "--json", "--socket", byName["beta"].socket)
	if !strings.Contains(out, `"state"`) {
		t.Errorf("x0t health --json on beta:\n%s", out)
	}
	out = env.MustRun(a.ns, x0tBin, "routes", "--socket", a.socket)
	if !strings.Contains(out, "gamma") || !strings.Contains(out, "beta") {
		t.Errorf("x0t routes on alpha:\n%s", out)
	}
	t.Logf("x0t routes on alpha:\n%s", out)
}

// diamond is alpha–beta–delta and alpha–gamma–delta, no alpha–delta or
// beta–gamma link.
func diamond(t *testing.T, env *netns.Env) map[string]*meshNode {
	byName, nodes := buildMesh(t, env, []string{"alpha", "beta", "gamma", "delta"}, [][2]int{{0, 1}, {0, 2}, {1, 3}, {2, 3}})
	for _, n := range nodes {
		n.start(env)
	}
	a := byName["alpha"]
	a.waitRoute(t, "delta", 20*time.Second)
	waitPing(t, a.ns, byName["delta"].v4, 15*time.Second)
	waitPing(t, byName["delta"].ns, a.v4, 10*time.Second)
	return byName
}

// probeStream runs the 5 ms UDP probe stream from alpha to delta for dur and
// returns, for each cut time given, the longest gap in arrivals that spans it.
type probeStream struct {
	recv *netns.Proc
	send *netns.Proc
	out  *bufio.Scanner
}

func startProbes(t *testing.T, env *netns.Env, from, to *meshNode, port int, dur time.Duration) *probeStream {
	t.Helper()
	self, _ := os.Executable()
	target := netip.AddrPortFrom(to.v4, uint16(port)).String()
	rc := to.ns.Command(context.Background(), self, "probe-recv", target, (dur + 2*time.Second).String())
	rc.Env = append(os.Environ(), "X0T_E2E_HELPER=probe-recv")
	pr, pw, _ := os.Pipe()
	rc.Stdout = pw
	recv := env.StartCmd(to.ns, "probe-recv", rc)
	pw.Close()
	sc := bufio.NewScanner(pr)
	if !sc.Scan() || sc.Text() != "listening" {
		t.Fatal("probe receiver did not start")
	}
	sc2 := from.ns.Command(context.Background(), self, "probe-send", target, dur.String())
	sc2.Env = append(os.Environ(), "X0T_E2E_HELPER=probe-send")
	send := env.StartCmd(from.ns, "probe-send", sc2)
	return &probeStream{recv: recv, send: send, out: sc}
}

// gaps waits for the stream to end and returns, for each cut, the longest
// silence between arrivals in the second after it.
func (p *probeStream) gaps(t *testing.T, cuts []time.Time) []time.Duration {
	t.Helper()
	p.send.Wait()
	var arrivals []time.Time
	for p.out.Scan() {
		f := strings.Fields(p.out.Text())
		if len(f) != 2 {
			continue
		}
		ns, _ := strconv.ParseInt(f[1], 10, 64)
		arrivals = append(arrivals, time.Unix(0, ns))
	}
	p.recv.Wait()
	if os.Getenv("X0T_DEBUG_PROBES") != "" {
		for j := 1; j < len(arrivals); j++ {
			if g := arrivals[j].Sub(arrivals[j-1]); g > 8*time.Millisecond {
				t.Logf("gap of %v ending at cut%+v", g, arrivals[j].Sub(cuts[0]))
			}
		}
		t.Logf("arrivals from cut%+v to cut%+v", arrivals[0].Sub(cuts[0]), arrivals[len(arrivals)-1].Sub(cuts[0]))
	}
	out := make([]time.Duration, len(cuts))
	for i, cut := range cuts {
		// The longest silence between arrivals in the two seconds after the
		// cut, counting from the last arrival before it. The stream's own end
		// is not a silence; no arrival at all after the cut is (until the end).
		end := cut.Add(2 * time.Second)
		last := cut
		after := false
		for _, at := range arrivals {
			if at.Before(cut) {
				last = at
				continue
			}
			if at.After(end) {
				break
			}
			out[i] = max(out[i], at.Sub(last))
			last, after = at, true
		}
		if !after {
			out[i] = end.Sub(last)
		}
	}
	return out
}

// TestMeshDiamondFailover is issue 4's second end-to-end check: while a TCP
// transfer runs from alpha to delta and a probe stream sends a numbered UDP
// packet every 5 ms, the link the traffic uses is cut with `ip link set DEV
// down`; the transfer completes with matching SHA-256 and no reset. Then the
// link comes back and the other path is cut: same result.
func TestMeshDiamondFailover(t *testing.T) {
	env := netns.New(t)
	byName := diamond(t, env)
	a, d := byName["alpha"], byName["delta"]
	ctx := context.Background()

	for round := range 2 {
		a.waitRoute(t, "delta", 5*time.Second)
		probes := startProbes(t, env, a, d, 7000+round, 6*time.Second)
		done := make(chan time.Duration, 1)
		go func() { done <- transfer(t, env, a.ns, d.ns, d.v4, 256<<20) }()
		via := activeRelay(t, byName, 300*time.Millisecond)
		dev := a.devs[via]
		if os.Getenv("X0T_DEBUG_PROBES") != "" {
			for _, r := range []string{"beta", "gamma"} {
				out, _ := byName[r].ns.Run(ctx, x0tBin, "status", "--json", "--socket", byName[r].socket)
				var st localapi.Status
				json.Unmarshal([]byte(out), &st)
				t.Logf("before cut: %s forwarded %d", r, st.Counters["Forwarded"])
			}
		}
		cut := time.Now()
		env.SetLinkDown(a.ns, dev)
		if os.Getenv("X0T_DEBUG_PROBES") != "" {
			for range 8 {
				time.Sleep(500 * time.Millisecond)
				for _, n := range []string{"alpha", "delta"} {
					out, _ := byName[n].ns.Run(ctx, x0tBin, "routes", "--socket", byName[n].socket)
					t.Logf("%s routes at cut+%v:\n%s", n, time.Since(cut).Round(time.Millisecond), out)
				}
			}
			for _, r := range []string{"beta", "gamma"} {
				out, _ := byName[r].ns.Run(ctx, x0tBin, "status", "--json", "--socket", byName[r].socket)
				var st localapi.Status
				json.Unmarshal([]byte(out), &st)
				t.Logf("after cut: %s forwarded %d", r, st.Counters["Forwarded"])
			}
			out, _ := a.ns.Run(ctx, x0tBin, "routes", "--socket", a.socket)
			t.Logf("alpha routes after cut:\n%s", out)
			out, _ = a.ns.Run(ctx, "ip", "route")
			t.Logf("alpha ip route:\n%s", out)
			for _, n := range []string{"alpha", "beta", "delta"} {
				for _, line := range strings.Split(byName[n].proc.Output(), "\n") {
					if !strings.Contains(line, "handshake") && line != "" {
						t.Logf("%s: %s", n, line)
					}
				}
			}
			t.Logf("cut at %s", cut.Format("15:04:05.000"))
		}
		took := <-done
		gap := probes.gaps(t, []time.Time{cut})[0]
		now := a.waitRoute(t, "delta", 5*time.Second)
		t.Logf("round %d: cut alpha's link to %s (%s); probe gap %v; 256 MiB transfer intact in %v; now via %s",
			round, via, dev, gap.Round(time.Millisecond), took.Round(time.Millisecond), now)
		if gap > time.Second {
			t.Errorf("round %d: probe stream silent for %v", round, gap)
		}
		if now == via {
			t.Errorf("round %d: still routed via the cut link", round)
		}
		env.SetLinkUp(a.ns, dev)
		// Traffic moves back when the better path returns (or stays, if equal).
		time.Sleep(2 * time.Second)
		if _, err := a.routeVia(ctx, "delta"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFailoverFigures is what scripts/bench-failover.sh runs (X0T_FAILOVER_CUTS
// set): it cuts the active path of the diamond N times and prints the longest
// probe gap for each cut, the median and the maximum.
func TestFailoverFigures(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("X0T_FAILOVER_CUTS"))
	if n == 0 {
		t.Skip("set X0T_FAILOVER_CUTS=N to measure (scripts/bench-failover.sh)")
	}
	env := netns.New(t)
	byName := diamond(t, env)
	a, d := byName["alpha"], byName["delta"]
	var all []time.Duration
	for i := range n {
		a.waitRoute(t, "delta", 10*time.Second)
		probes := startProbes(t, env, a, d, 7100+i, 3*time.Second)
		time.Sleep(time.Second)
		// The path in use is the relay that is forwarding the probes now.
		via := activeRelay(t, byName, 300*time.Millisecond)
		dev := a.devs[via]
		cut := time.Now()
		env.SetLinkDown(a.ns, dev)
		gap := probes.gaps(t, []time.Time{cut})[0]
		all = append(all, gap)
		fmt.Printf("cut %2d: alpha's link to %-5s down, longest gap %4d ms\n", i+1, via, gap.Milliseconds())
		env.SetLinkUp(a.ns, dev)
		time.Sleep(2 * time.Second) // the link is monitored up again before the next cut
	}
	slices.Sort(all)
	med := all[len(all)/2]
	if len(all)%2 == 0 {
		med = (all[len(all)/2-1] + all[len(all)/2]) / 2
	}
	fmt.Printf("FAILOVER cuts=%d median_ms=%d max_ms=%d\n", n, med.Milliseconds(), all[len(all)-1].Milliseconds())
}

// activeRelay returns which of beta and gamma forwards more packets over the
// next interval: the one carrying alpha's traffic to delta.
func activeRelay(t *testing.T, byName map[string]*meshNode, interval time.Duration) string {
	t.Helper()
	ctx := context.Background()
	count := func() map[string]uint64 {
		c := map[string]uint64{}
		for _, r := range []string{"beta", "gamma"} {
			out, err := byName[r].ns.Run(ctx, x0tBin, "status", "--json", "--socket", byName[r].socket)
			if err != nil {
				t.Fatal(err)
			}
			var st localapi.Status
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatal(err)
			}
			c[r] = st.Counters["Forwarded"]
		}
		return c
	}
	before := count()
	time.Sleep(interval)
	after := count()
	if after["beta"]-before["beta"] >= after["gamma"]-before["gamma"] {
		return "beta"
	}
	return "gamma"
}
