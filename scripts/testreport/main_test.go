package main

import (
	"os"
	"strings"
	"testing"
)

// The testdata streams are real `go test -json` output (Go 1.26) of a throwaway
// module example.com/s with packages: ok (passes), none (no tests), root (one
// test skips with "needs root", one for another reason), fail (a subtest fails)
// and broken (does not compile); each file holds a subset.

func runFile(t *testing.T, file string, o options) (string, int) {
	t.Helper()
	f, err := os.Open("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	o.module = "example.com/s"
	status := run(f, &b, o)
	return b.String(), status
}

func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestGreen(t *testing.T) {
	out, status := runFile(t, "green.json", options{requireRoot: true})
	if status != 0 {
		t.Errorf("status %d, want 0\n%s", status, out)
	}
	wantLines(t, out, "ok    ok", "-     none", "packages: 1 ok, 0 failed, 1 without tests", "tests:    1 passed, 0 failed, 0 skipped")
	if strings.Contains(out, "root") {
		t.Errorf("unexpected mention of root:\n%s", out)
	}
}

func TestRootSkip(t *testing.T) {
	out, status := runFile(t, "rootskip.json", options{})
	if status != 0 {
		t.Errorf("without -require-root: status %d, want 0\n%s", status, out)
	}
	wantLines(t, out, `WARNING: 1 test(s) skipped with "needs root"`,
		"skip  root TestRoot: root_test.go:3: needs root",
		"skip  root TestOther: root_test.go:4: no x0t binary")

	out, status = runFile(t, "rootskip.json", options{requireRoot: true})
	if status != 3 {
		t.Errorf("with -require-root: status %d, want 3\n%s", status, out)
	}
	wantLines(t, out, "ERROR: 1 test(s)", "  example.com/s/root TestRoot\n")
	if strings.Contains(out, "TestOther\n") {
		t.Errorf("a skip for another reason was counted as a root skip:\n%s", out)
	}
}

func TestFailures(t *testing.T) {
	out, status := runFile(t, "mixed.json", options{requireRoot: true, quiet: true})
	if status != 1 {
		t.Errorf("status %d, want 1 (a failure wins over a root skip)\n%s", status, out)
	}
	wantLines(t, out,
		"FAIL  fail", "----- fail TestParent/bad", "some detail", "boom",
		"FAIL  broken", "undefined: undefined",
		"packages: 2 ok, 2 failed, 1 without tests",
		"tests:    2 passed, 2 failed, 2 skipped",
		"  FAIL  fail TestParent/bad", "  FAIL  broken (package)",
		"ERROR: 1 test(s)")
	if strings.Contains(out, "----- fail TestParent\n") {
		t.Errorf("parent output printed although its failed subtest was:\n%s", out)
	}
	if strings.Contains(out, "ok    ok") {
		t.Errorf("-quiet printed a passing package:\n%s", out)
	}
}

func TestEmptyStreamFails(t *testing.T) {
	var b strings.Builder
	if status := run(strings.NewReader("go: cannot find main module\n"), &b, options{}); status != 1 {
		t.Errorf("status %d, want 1", status)
	}
	wantLines(t, b.String(), "go: cannot find main module", "no test events at all")
}

func TestPackageLevelRootSkip(t *testing.T) {
	in := `{"Action":"output","Package":"p","Output":"skipping all: needs root\n"}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.01s\n"}
{"Action":"pass","Package":"p","Elapsed":0.01}
`
	var b strings.Builder
	if status := run(strings.NewReader(in), &b, options{requireRoot: true}); status != 3 {
		t.Errorf("status %d, want 3\n%s", status, b.String())
	}
	wantLines(t, b.String(), "p (package)")
}

func TestSkipReason(t *testing.T) {
	for in, want := range map[string]string{
		"=== RUN   TestX\n    x_test.go:9: needs root\n--- SKIP: TestX (0.00s)\n":           "x_test.go:9: needs root",
		"=== RUN   TestX\n--- SKIP: TestX (0.00s)\n":                                        "(no reason given)",
		"=== RUN   TestX\n    a.go:1: first\n    a.go:2: second\n--- SKIP: TestX (0.00s)\n": "a.go:2: second",
	} {
		if got := skipReason(in); got != want {
			t.Errorf("skipReason(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOutputTruncation(t *testing.T) {
	var r testResult
	chunk := strings.Repeat("x", 1000) + "\n"
	for range 200 {
		r.add(chunk)
	}
	r.add("the end\n")
	if r.output.Len() > maxOutput {
		t.Errorf("kept %d bytes, limit %d", r.output.Len(), maxOutput)
	}
	if txt := r.text(); !strings.HasPrefix(txt, "[... output truncated ...]") || !strings.HasSuffix(txt, "the end\n") {
		t.Errorf("truncated text should keep the tail and say so; got %q...%q", txt[:40], txt[len(txt)-20:])
	}
}
