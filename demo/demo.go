// Package demo runs the `x0t demo` walk-through: a mesh of nodes inside one
// process, real traffic between them, and the figures that show it worked.
package demo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/x0tta6bl4/x0t/internal/progress"
	"github.com/x0tta6bl4/x0t/lab"
	"github.com/x0tta6bl4/x0t/node"
	"github.com/x0tta6bl4/x0t/session"
)

// Options tune the demo.
type Options struct {
	Nodes     int // at least 3
	Pings     int // echo requests per pair and family
	HTTPBytes int // size of the HTTP transfer

	// Progress shows the phases with a spinner (x0t demo passes one that
	// draws only on a terminal); nil shows nothing.
	Progress *progress.Reporter

	// sabotage, in tests, breaks something once the mesh is up, to check
	// that the demo then reports failure.
	sabotage func(nodes []*lab.Node)
}

// DefaultOptions are what `x0t demo` uses.
var DefaultOptions = Options{Nodes: 3, Pings: 5, HTTPBytes: 32 << 20}

var names = []string{"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}

// Run runs the demo, writing its report to w. It returns an error when any step
// it reports failed.
func Run(ctx context.Context, w io.Writer, opt Options) error {
	// The report and the spinner may share a terminal: keep their lines apart.
	w = opt.Progress.Wrap(w)
	err := run(ctx, w, opt)
	if err != nil && !errors.Is(err, errReported) {
		fmt.Fprintf(w, "demo FAILED: %v\n", err)
	}
	return err
}

// errReported marks a failure the report already summed up.
var errReported = errors.New("demo failed")

func run(ctx context.Context, w io.Writer, opt Options) error {
	if opt.Nodes < 3 || opt.Nodes > len(names) {
		return fmt.Errorf("demo: nodes must be 3..%d", len(names))
	}
	start := time.Now()
	dir, err := os.MkdirTemp("", "x0t-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(w, "x0tta6bl4 demo: a control plane and %d nodes in one process (gVisor netstack devices, UDP and HTTPS on 127.0.0.1)\n\n", opt.Nodes)
	ph := opt.Progress.Start("starting the control plane")
	cp, err := lab.StartControlPlane(ctx, dir, nil)
	if err != nil {
		ph.Fail()
		return fmt.Errorf("demo: control plane: %w", err)
	}
	defer cp.Close()
	token, err := cp.NewMesh(ctx, "demo")
	ph.End(err)
	if err != nil {
		return fmt.Errorf("demo: mesh: %w", err)
	}
	fmt.Fprintln(w, "Control plane")
	fmt.Fprintf(w, "  %s (TLS pinned by SHA-256 %s...), mesh \"demo\" with its own hybrid CA\n", cp.URL, cp.Fingerprint[:16])
	var nodes []*lab.Node
	defer func() {
		for _, n := range nodes {
			n.Stop()
		}
	}()
	ph = opt.Progress.Start("enrolling %d nodes (keys, join token, signed netmap)", opt.Nodes)
	for i := range opt.Nodes {
		ph.Update("enrolling node %d of %d: %s (keys, join token, signed netmap)", i+1, opt.Nodes, names[i])
		n, err := cp.Join(ctx, token, names[i])
		if err != nil {
			ph.Fail()
			return fmt.Errorf("demo: enroll %s: %w", names[i], err)
		}
		nodes = append(nodes, n)
	}
	ph.Update("enrolled %d nodes", opt.Nodes)
	ph.Done()
	ph = opt.Progress.Start("hybrid post-quantum handshakes between %d nodes", len(nodes))
	for _, n := range nodes {
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := n.WaitPeers(wctx, len(nodes)-1)
		cancel()
		if err != nil {
			ph.Fail()
			return err
		}
	}
	ph.Done()
	fmt.Fprintf(w, "  %d nodes generated their keys, enrolled with a join token and follow a netmap signed by the mesh CA\n\n", len(nodes))
	if opt.sabotage != nil {
		opt.sabotage(nodes)
	}
	suite := node.SuiteName(nodes[0].Node.Suite())
	fmt.Fprintln(w, "Algorithms")
	fmt.Fprintln(w, "  certificates  hybrid Ed25519 + ML-DSA-65 signatures by the mesh CA; both must verify")
	fmt.Fprintln(w, "  handshake     Noise IK, hybrid: X25519 + ML-KEM-768 (4 X25519 and 3 ML-KEM-768 secrets in one HKDF-SHA256 chain)")
	fmt.Fprintf(w, "  transport     %s, 64-bit counters, %d-packet replay window, rekey every %v\n\n", suite, session.ReplayWindow, session.RekeyAfterTime)

	fmt.Fprintln(w, "Nodes")
	for _, n := range nodes {
		fmt.Fprintf(w, "  %-8s %-12s %-26s id %s\n", n.Name, n.Addr(false), n.Addr(true), n.Node.ID().Short())
	}
	fmt.Fprintln(w)

	var failures []error
	fail := func(err error) {
		failures = append(failures, err)
		fmt.Fprintf(w, "  FAILED: %v\n", err)
	}

	fmt.Fprintf(w, "Ping over the overlay (%d UDP echo round trips per pair and family)\n", opt.Pings)
	ph, failed := opt.Progress.Start("pinging"), len(failures)
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			ph.Update("pinging %s -> %s", a.Name, b.Name)
			line := fmt.Sprintf("  %-8s -> %-8s", a.Name, b.Name)
			for _, v6 := range []bool{false, true} {
				rtts, err := ping(ctx, a, b, v6, opt.Pings)
				if err != nil {
					fmt.Fprintln(w, line)
					fail(err)
					continue
				}
				fam := "IPv4"
				if v6 {
					fam = "IPv6"
				}
				line += fmt.Sprintf("  %s min/avg/max %s", fam, rttSummary(rtts))
			}
			fmt.Fprintln(w, line)
		}
	}
	ph.Update("pinging every pair")
	endPhase(ph, len(failures) > failed)
	fmt.Fprintln(w)

	src, dst := nodes[len(nodes)-1], nodes[0]
	fmt.Fprintf(w, "HTTP transfer through the tunnel (%d MiB, %s -> %s)\n", opt.HTTPBytes>>20, src.Name, dst.Name)
	blob, stop, err := src.ServeHTTP(opt.HTTPBytes)
	if err != nil {
		return err
	}
	defer stop()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ph = opt.Progress.Start("HTTP transfer of %d MiB", opt.HTTPBytes>>20)
	t0 := time.Now()
	got, err := dst.Get(tctx, src, false)
	elapsed := time.Since(t0)
	cancel()
	ph.End(err)
	switch {
	case err != nil:
		fail(fmt.Errorf("HTTP GET: %w", err))
	case sha256.Sum256(got) != sha256.Sum256(blob):
		fail(fmt.Errorf("HTTP GET: body differs (%d bytes, want %d)", len(got), len(blob)))
	default:
		fmt.Fprintf(w, "  %d bytes in %v: %.2f Gbit/s, SHA-256 matches\n\n", len(got), elapsed.Round(time.Millisecond),
			float64(len(got))*8/elapsed.Seconds()/1e9)
	}

	ph = opt.Progress.Start("self-healing: link %s - %s cut under an echo stream", nodes[0].Name, nodes[1].Name)
	failed = len(failures)
	healing(ctx, w, cp, nodes[0], nodes[1], fail)
	endPhase(ph, len(failures) > failed)

	fmt.Fprintln(w, "Counters")
	var hs, tx, rx, drops uint64
	for _, n := range nodes {
		st := n.Node.Stats().Snapshot()
		hs += st["HandshakesCompleted"]
		tx += st["TxPackets"]
		rx += st["RxPackets"]
		for k, v := range st {
			if len(k) > 4 && (k[:4] == "Drop" || k[:2] == "HS") && k != "DropNoRoute" {
				drops += v
			}
		}
	}
	fmt.Fprintf(w, "  handshakes %d, data packets sent %d, received %d, refused %d\n\n", hs, tx, rx, drops)
	if len(failures) > 0 {
		fmt.Fprintf(w, "demo FAILED (%d problems) in %v\n", len(failures), time.Since(start).Round(time.Millisecond))
		return errors.Join(append([]error{errReported}, failures...)...)
	}
	fmt.Fprintf(w, "demo OK in %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// endPhase ends a progress phase as failed if the step reported a failure.
func endPhase(ph *progress.Phase, failed bool) {
	if failed {
		ph.Fail()
		return
	}
	ph.Done()
}

func ping(ctx context.Context, a, b *lab.Node, v6 bool, count int) ([]time.Duration, error) {
	var rtts []time.Duration
	for i := range count {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rtt, err := a.Ping(pctx, b, v6, i+1)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("ping %s -> %s (%s): %w", a.Name, b.Name, b.Addr(v6), err)
		}
		rtts = append(rtts, rtt)
	}
	return rtts, nil
}

func rttSummary(rtts []time.Duration) string {
	slices.Sort(rtts)
	var sum time.Duration
	for _, r := range rtts {
		sum += r
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return fmt.Sprintf("%.2f/%.2f/%.2f ms", ms(rtts[0]), ms(sum/time.Duration(len(rtts))), ms(rtts[len(rtts)-1]))
}

// healing cuts the direct link between a and b while a sends b an echo every
// 10 ms, and shows the traffic move through the mesh and back.
func healing(ctx context.Context, w io.Writer, cp *lab.ControlPlane, a, b *lab.Node, fail func(error)) {
	fmt.Fprintf(w, "Self-healing: cut the direct link %s - %s while %s sends %s an echo every 10 ms\n", a.Name, b.Name, a.Name, b.Name)
	route := func() string {
		for _, r := range a.Node.Routes() {
			if r.Dest == b.Name {
				if r.Direct {
					return "direct"
				}
				return fmt.Sprintf("via %s (%d hops)", r.Next, r.Hops)
			}
		}
		return "no route"
	}
	fmt.Fprintf(w, "  before: %s -> %s %s\n", a.Name, b.Name, route())
	start := time.Now()
	cutAt := start.Add(500 * time.Millisecond)
	var cut bool
	var lastOK, worst time.Duration
	for seq := 1; time.Since(start) < 2500*time.Millisecond; seq++ {
		if !cut && time.Now().After(cutAt) {
			cp.Cut(a, b)
			cut = true
		}
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := a.Ping(pctx, b, false, seq)
		cancel()
		now := time.Since(start)
		if err == nil {
			if cut {
				worst = max(worst, now-lastOK)
			}
			lastOK = now
		}
		time.Sleep(10 * time.Millisecond)
	}
	after := route()
	fmt.Fprintf(w, "  after the cut: %s -> %s %s; longest silence %v\n", a.Name, b.Name, after, worst.Round(time.Millisecond))
	switch {
	case time.Since(start)-lastOK > 300*time.Millisecond:
		fail(fmt.Errorf("self-healing: no traffic %s -> %s after the cut", a.Name, b.Name))
	case worst > time.Second:
		fail(fmt.Errorf("self-healing: traffic stopped for %v", worst))
	case after == "direct" || after == "no route":
		fail(fmt.Errorf("self-healing: %s -> %s did not move to another path (%s)", a.Name, b.Name, after))
	}
	cp.Mend(a, b)
	deadline := time.Now().Add(5 * time.Second)
	for route() != "direct" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(w, "  link mended: %s -> %s %s\n\n", a.Name, b.Name, route())
}
