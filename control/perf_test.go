package control_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control"
	"github.com/x0tta6bl4/x0t/control/apitypes"
	"github.com/x0tta6bl4/x0t/controlclient"
	"github.com/x0tta6bl4/x0t/identity"
	"github.com/x0tta6bl4/x0t/netmap"
)

// The control plane's figures (docs/perf.md), measured by a program:
//
//	X0T_PERF=1 go test -run TestPerfFigures -v -timeout 30m ./control/
//
// The control plane runs in a child process (so that its memory is its
// own); N simulated nodes (X0T_PERF_NODES, default 1000) in this process
// enroll, then each holds a real netmap stream over its own TLS connection.
// It prints: enrollments per second; the time from one change (a tag
// change, a join, a revocation) to its delta reaching every connected node;
// and the server's memory per connected node.

func TestPerfFigures(t *testing.T) {
	if os.Getenv("X0T_PERF") == "" {
		t.Skip("set X0T_PERF=1 to measure the control plane's figures")
	}
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("X0T_PERF_NODES")); err == nil && v > 1 {
		n = v
	}
	ctx := context.Background()
	child := startPerfChild(t)
	admin := must[*controlclient.Client](t)(controlclient.New(child.url, controlclient.Options{APIKey: child.key, Fingerprint: child.fp, Timeout: time.Minute}))
	must[*apitypes.Mesh](t)(admin.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: "perf"}))
	tok := must[*apitypes.CreatedToken](t)(admin.CreateToken(ctx, "perf", apitypes.CreateTokenRequest{AutoApprove: true, MaxUses: ptr(0), TTL: "24h"}))

	// Keys are made before the clock starts: they are the nodes' work.
	keys := make([]*identity.NodeKey, n+1)
	parallel(n+1, runtime.GOMAXPROCS(0), func(i int) { keys[i], _ = identity.GenerateNodeKey() })

	// 1. Enrollments per second (auto-approved: certificate issued at once),
	// 16 at a time over one HTTP/2 connection.
	client := must[*controlclient.Client](t)(controlclient.New(child.url, controlclient.Options{Fingerprint: child.fp, Timeout: time.Minute}))
	var failed atomic.Int64
	start := time.Now()
	parallel(n, 16, func(i int) {
		req := controlclient.NewEnrollRequest(tok.Secret, fmt.Sprintf("node-%d", i), keys[i], []string{fmt.Sprintf("192.0.2.%d:%d", i%250+1, 4242+i/250)})
		if _, err := client.Node(keys[i]).Enroll(ctx, req); err != nil {
			failed.Add(1)
			t.Log(err)
		}
	})
	enrollTime := time.Since(start)
	if failed.Load() > 0 {
		t.Fatalf("%d enrollments failed", failed.Load())
	}
	before := child.mem(t)

	// 2. Every node opens its stream and takes its snapshot.
	sims := make([]*simNode, n)
	start = time.Now()
	parallel(n, 64, func(i int) { sims[i] = openSim(t, child, keys[i]) })
	for _, s := range sims {
		s.waitLines(t, 1, 10*time.Minute)
	}
	connectTime := time.Since(start)
	snapBytes := sims[0].bytes.Load()
	after := child.mem(t)

	// One node verifies what it gets, as the agent does.
	ca := must[*identity.Certificate](t)(identity.ParseCertificate(must[*apitypes.Mesh](t)(admin.GetMesh(ctx, "perf")).CACert))
	check := newCheckedNode(t, child, keys[n-1], ca)

	// 3. One change reaching every connected node.
	round := func(what string, change func(), skip int) []time.Duration {
		base := make([]int64, n)
		for i, s := range sims {
			base[i] = s.lines.Load()
		}
		start := time.Now()
		change()
		var lat []time.Duration
		for i, s := range sims {
			if i == skip {
				continue
			}
			s.waitLines(t, base[i]+1, 2*time.Minute)
			lat = append(lat, time.Duration(s.lastAt.Load()-start.UnixNano()))
		}
		slices.Sort(lat)
		t.Logf("%-34s reached %d nodes: first %v, median %v, p99 %v, last %v", what, len(lat),
			lat[0].Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond),
			lat[len(lat)-1].Round(time.Millisecond))
		return lat
	}
	tagLat := round("tag change of one node", func() {
		must[*apitypes.Node](t)(admin.UpdateNode(ctx, "perf", "node-0", apitypes.UpdateNodeRequest{Tags: &[]string{"web"}}))
	}, 0)
	joinLat := round("a new node joins", func() {
		req := controlclient.NewEnrollRequest(tok.Secret, "newcomer", keys[n], nil)
		must[*api.NodeResponse](t)(client.Node(keys[n]).Enroll(ctx, req))
	}, -1)
	revLat := round("revocation of one node", func() {
		must[*apitypes.Node](t)(admin.RevokeNode(ctx, "perf", "node-1"))
	}, 1)
	check.expect(t, n-1, "node-1") // the verifying node saw the snapshot, the join and the revocation applied

	perNode := func(a, b uint64) float64 { return float64(int64(b)-int64(a)) / float64(n) / 1024 }
	fmt.Printf("\ncontrol plane figures, %d nodes, GOMAXPROCS=%d, %s\n", n, runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Printf("  enrollments per second (auto-approve, 16 concurrent): %.0f  (%d in %v)\n", float64(n)/enrollTime.Seconds(), n, enrollTime.Round(time.Millisecond))
	fmt.Printf("  all %d streams connected with their snapshots in %v (snapshot %.1f MB per node)\n", n, connectTime.Round(time.Millisecond), float64(snapBytes)/1e6)
	fmt.Printf("  one change to every connected node (last / median):\n")
	fmt.Printf("    tag change: %v / %v\n", tagLat[len(tagLat)-1].Round(time.Millisecond), tagLat[len(tagLat)/2].Round(time.Millisecond))
	fmt.Printf("    new node:   %v / %v\n", joinLat[len(joinLat)-1].Round(time.Millisecond), joinLat[len(joinLat)/2].Round(time.Millisecond))
	fmt.Printf("    revocation: %v / %v\n", revLat[len(revLat)-1].Round(time.Millisecond), revLat[len(revLat)/2].Round(time.Millisecond))
	fmt.Printf("  server memory per connected node: heap %.1f KiB, stacks %.1f KiB, RSS %.1f KiB (heap %d→%d MiB, RSS %d→%d MiB, goroutines %d→%d)\n",
		perNode(before.heap, after.heap), perNode(before.stack, after.stack), perNode(before.rss, after.rss),
		before.heap>>20, after.heap>>20, before.rss>>20, after.rss>>20, before.goroutines, after.goroutines)
	for _, s := range sims {
		s.cancel()
	}
}

// parallel runs fn(0..n-1) on workers goroutines.
func parallel(n, workers int, fn func(int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// simNode holds a real netmap stream but only counts its lines: 1000
// snapshots of 1000 certificates would not fit in one test process.
type simNode struct {
	lines  atomic.Int64
	lastAt atomic.Int64
	bytes  atomic.Int64
	cancel context.CancelFunc
}

func openSim(t *testing.T, child *perfChild, key *identity.NodeKey) *simNode {
	tc, err := controlclient.TLSConfig(child.fp)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}
	ctx, cancel := context.WithCancel(context.Background())
	s := &simNode{cancel: cancel}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, child.url+api.PathNetmap+"?since=0", nil)
	api.SignRequest(req, nil, key.PublicKeys().ID(), key.Signing, time.Now())
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("netmap stream: %v %v", err, resp)
	}
	go func() {
		defer resp.Body.Close()
		r := bufio.NewReaderSize(resp.Body, 32<<10)
		var n int64
		for {
			chunk, err := r.ReadSlice('\n')
			n += int64(len(chunk))
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil {
				return
			}
			if n > 1 {
				s.bytes.Store(n)
				s.lastAt.Store(time.Now().UnixNano())
				s.lines.Add(1)
			}
			n = 0
		}
	}()
	return s
}

func (s *simNode) waitLines(t *testing.T, want int64, within time.Duration) {
	deadline := time.Now().Add(within)
	for s.lines.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("a node got %d lines, want %d", s.lines.Load(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkedNode verifies and applies its stream as the node agent does.
type checkedNode struct {
	mu sync.Mutex
	nm *netmap.Netmap
}

func newCheckedNode(t *testing.T, child *perfChild, key *identity.NodeKey, ca *identity.Certificate) *checkedNode {
	c := must[*controlclient.Client](t)(controlclient.New(child.url, controlclient.Options{Fingerprint: child.fp}))
	caKey := must[*identity.VerifyingKey](t)(ca.VerifyingKey())
	cn := &checkedNode{}
	go c.Node(key).StreamNetmap(context.Background(), 0, func(s *netmap.Signed) error {
		d, err := netmap.Open(s, caKey)
		if err != nil {
			return err
		}
		cn.mu.Lock()
		defer cn.mu.Unlock()
		next, err := netmap.Apply(cn.nm, d)
		if err == nil {
			cn.nm = next
		}
		return err
	})
	return cn
}

// expect waits for the verified netmap to hold peers peers and revoke name.
func (cn *checkedNode) expect(t *testing.T, peers int, revokedName string) {
	deadline := time.Now().Add(time.Minute)
	for {
		cn.mu.Lock()
		ok := cn.nm != nil && len(cn.nm.Peers) == peers && len(cn.nm.Revoked) == 1 &&
			!slices.ContainsFunc(cn.nm.Peers, func(p netmap.Peer) bool { return p.Name == revokedName })
		got := 0
		if cn.nm != nil {
			got = len(cn.nm.Peers)
		}
		cn.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the verifying node holds %d peers, want %d without %s", got, peers, revokedName)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// perfChild is the control plane process.
type perfChild struct {
	cmd          *exec.Cmd
	url, fp, key string
	out          *bufio.Scanner
	in           io.WriteCloser
}

type memSample struct {
	heap, stack, rss uint64
	goroutines       int
}

func startPerfChild(t *testing.T) *perfChild {
	cmd := exec.Command(os.Args[0], "-test.run=^TestPerfServerChild$")
	cmd.Env = append(os.Environ(), "X0T_PERF_CHILD="+t.TempDir())
	cmd.Stderr = os.Stderr
	out := must[io.ReadCloser](t)(cmd.StdoutPipe())
	in := must[io.WriteCloser](t)(cmd.StdinPipe())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	c := &perfChild{cmd: cmd, out: bufio.NewScanner(out), in: in}
	for c.out.Scan() {
		if f := strings.Fields(c.out.Text()); len(f) == 4 && f[0] == "READY" {
			c.url, c.fp, c.key = f[1], f[2], f[3]
			return c
		}
	}
	t.Fatal("the control plane child did not start")
	return nil
}

// mem asks the child for its memory after a GC.
func (c *perfChild) mem(t *testing.T) memSample {
	c.cmd.Process.Signal(syscall.SIGUSR1)
	for c.out.Scan() {
		var m memSample
		if _, err := fmt.Sscanf(c.out.Text(), "MEM %d %d %d %d", &m.heap, &m.stack, &m.rss, &m.goroutines); err == nil {
			return m
		}
	}
	t.Fatal("no memory report from the child")
	return memSample{}
}

// TestPerfServerChild is the control plane of TestPerfFigures.
func TestPerfServerChild(t *testing.T) {
	dir := os.Getenv("X0T_PERF_CHILD")
	if dir == "" {
		t.Skip("the child process of TestPerfFigures")
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := control.New(ctx, control.Config{Listen: "127.0.0.1:0", DataDir: dir, Logger: testLogger(),
		EnrollLimit: control.Limit{Rate: 1e6, Burst: 1e6}, AuthFailLimit: control.Limit{Rate: 1e6, Burst: 1e6}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	fmt.Printf("READY https://%s %s %s\n", ln.Addr(), srv.CertFingerprint(), srv.AdminKey)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }() // the parent went away
	for {
		select {
		case <-usr1:
			runtime.GC()
			debug.FreeOSMemory()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("MEM %d %d %d %d\n", ms.HeapInuse, ms.StackInuse, rss(), runtime.NumGoroutine())
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return
		}
	}
}

// rss reads the process's resident set size.
func rss() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
