// Command testreport reads `go test -json` events on stdin and prints a short
// account of them: one line per package as it finishes, the output of every failed
// test, and at the end a summary with every skipped test and its reason.
//
// It is the part of scripts/test that needs more than grep: deciding whether a
// test was skipped because it needs root. With -require-root (scripts/test passes
// it when CI=true) such a skip is an error, so CI cannot go green while the
// end-to-end tests silently did not run.
//
// Exit status: 0 all good; 1 a test or package failed (or the stream had no
// events at all); 3 no failures but root-only tests were skipped under
// -require-root.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json), including the build
// events that go test emits since Go 1.24.
type event struct {
	Time        time.Time
	Action      string
	Package     string
	ImportPath  string // build-output, build-fail
	Test        string
	Elapsed     float64
	Output      string
	FailedBuild string
}

// RootSkipMarker is what internal/testutil.RequireRoot says when it skips.
const RootSkipMarker = "needs root"

// maxOutput bounds the output kept per test; a failing test's tail is what matters.
const maxOutput = 64 << 10

type testResult struct {
	pkg, name string
	action    string // pass, fail, skip; "" while running
	output    strings.Builder
	truncated bool
}

func (r *testResult) add(s string) {
	if r.output.Len()+len(s) > maxOutput {
		r.truncated = true
		keep := r.output.String()
		if len(keep) > maxOutput/2 {
			keep = keep[len(keep)-maxOutput/2:]
		}
		r.output.Reset()
		r.output.WriteString(keep)
	}
	r.output.WriteString(s)
}

// text is the test's output with a marker where the front was dropped.
func (r *testResult) text() string {
	if r.truncated {
		return "[... output truncated ...]\n" + r.output.String()
	}
	return r.output.String()
}

type pkgResult struct {
	name    string
	action  string // pass, fail, skip ("no test files")
	elapsed float64
	output  testResult // output outside any test: build errors, TestMain, panics
}

// report accumulates the stream.
type report struct {
	pkgs   map[string]*pkgResult
	tests  map[string]*testResult
	order  []*testResult // first appearance, for stable printing
	events int
}

func newReport() *report {
	return &report{pkgs: map[string]*pkgResult{}, tests: map[string]*testResult{}}
}

func (r *report) pkg(name string) *pkgResult {
	p := r.pkgs[name]
	if p == nil {
		p = &pkgResult{name: name}
		r.pkgs[name] = p
	}
	return p
}

func (r *report) test(pkg, name string) *testResult {
	key := pkg + "\x00" + name
	t := r.tests[key]
	if t == nil {
		t = &testResult{pkg: pkg, name: name}
		r.tests[key] = t
		r.order = append(r.order, t)
	}
	return t
}

// handle takes one event; it returns the package when that package just finished.
func (r *report) handle(e event) *pkgResult {
	r.events++
	switch e.Action {
	case "build-output":
		r.pkg(e.ImportPath).output.add(e.Output)
		return nil
	case "build-fail":
		return nil // reported by the package's own fail event, with FailedBuild
	}
	if e.Package == "" {
		return nil
	}
	if e.Test == "" {
		p := r.pkg(e.Package)
		switch e.Action {
		case "output":
			p.output.add(e.Output)
		case "pass", "fail", "skip":
			p.action, p.elapsed = e.Action, e.Elapsed
			if e.FailedBuild != "" && e.FailedBuild != e.Package {
				// The build output sits under the package whose build failed.
				p.output.add(r.pkg(e.FailedBuild).output.text())
			}
			return p
		}
		return nil
	}
	t := r.test(e.Package, e.Test)
	switch e.Action {
	case "output":
		t.add(e.Output)
	case "pass", "fail", "skip":
		t.action = e.Action
	}
	return nil
}

// rootSkipped is true for a test skipped with RequireRoot's message, and for a
// package whose output outside tests carries it (a TestMain that bailed out).
func (r *report) rootSkips() []string {
	var out []string
	for _, t := range r.order {
		if t.action == "skip" && strings.Contains(t.output.String(), RootSkipMarker) {
			out = append(out, t.pkg+" "+t.name)
		}
	}
	for _, name := range r.sortedPkgs() {
		if strings.Contains(r.pkgs[name].output.output.String(), RootSkipMarker) {
			out = append(out, name+" (package)")
		}
	}
	return out
}

func (r *report) sortedPkgs() []string {
	names := make([]string, 0, len(r.pkgs))
	for n, p := range r.pkgs {
		if p.action != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// skipReason picks the line that says why a test skipped: the last line of its
// output that is not one of go test's own markers.
func skipReason(out string) string {
	reason := ""
	for _, line := range strings.Split(out, "\n") {
		s := strings.TrimSpace(line)
		if s == "" || strings.HasPrefix(s, "=== ") || strings.HasPrefix(s, "--- ") {
			continue
		}
		reason = s
	}
	if reason == "" {
		return "(no reason given)"
	}
	return reason
}

func shortPkg(name, module string) string {
	if s, ok := strings.CutPrefix(name, module+"/"); ok {
		return s
	}
	return name
}

// progress prints the line for a finished package and, if it failed, the output of
// its failed tests (or of the package itself when no test failed: build errors,
// panics, timeouts).
func (r *report) progress(w io.Writer, p *pkgResult, module string) {
	name := shortPkg(p.name, module)
	switch p.action {
	case "pass":
		fmt.Fprintf(w, "ok    %-40s %6.2fs\n", name, p.elapsed)
	case "skip":
		fmt.Fprintf(w, "-     %-40s (no tests)\n", name)
	case "fail":
		fmt.Fprintf(w, "FAIL  %-40s %6.2fs\n", name, p.elapsed)
		shown := false
		for _, t := range r.order {
			if t.pkg == p.name && t.action == "fail" && !hasFailedSubtest(r, t) {
				fmt.Fprintf(w, "\n----- %s %s\n%s", name, t.name, indent(t.text()))
				shown = true
			}
		}
		if !shown || strings.Contains(p.output.output.String(), "panic:") {
			fmt.Fprintf(w, "\n----- %s (package output)\n%s", name, indent(p.output.text()))
		}
		fmt.Fprintln(w)
	}
}

// hasFailedSubtest avoids printing a parent's output when its failed subtests are
// printed: the parent holds little more than their names.
func hasFailedSubtest(r *report, t *testResult) bool {
	for _, o := range r.order {
		if o.pkg == t.pkg && o.action == "fail" && strings.HasPrefix(o.name, t.name+"/") {
			return true
		}
	}
	return false
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (no output)\n"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

// summary prints totals, skips and failures, and returns the exit status.
func (r *report) summary(w io.Writer, module string, requireRoot bool) int {
	var nPass, nFail, nSkip, pkgOK, pkgFail, pkgNone int
	for _, t := range r.order {
		switch t.action {
		case "pass":
			nPass++
		case "fail":
			nFail++
		case "skip":
			nSkip++
		}
	}
	for _, n := range r.sortedPkgs() {
		switch r.pkgs[n].action {
		case "pass":
			pkgOK++
		case "fail":
			pkgFail++
		case "skip":
			pkgNone++
		}
	}
	fmt.Fprintf(w, "packages: %d ok, %d failed, %d without tests\n", pkgOK, pkgFail, pkgNone)
	fmt.Fprintf(w, "tests:    %d passed, %d failed, %d skipped (subtests included)\n", nPass, nFail, nSkip)
	for _, t := range r.order {
		if t.action == "skip" {
			fmt.Fprintf(w, "  skip  %s %s: %s\n", shortPkg(t.pkg, module), t.name, skipReason(t.output.String()))
		}
	}
	for _, t := range r.order {
		if t.action == "fail" {
			fmt.Fprintf(w, "  FAIL  %s %s\n", shortPkg(t.pkg, module), t.name)
		}
	}
	for _, n := range r.sortedPkgs() {
		if r.pkgs[n].action == "fail" {
			fmt.Fprintf(w, "  FAIL  %s (package)\n", shortPkg(n, module))
		}
	}

	status := 0
	if nFail > 0 || pkgFail > 0 {
		status = 1
	}
	if r.events == 0 {
		fmt.Fprintln(w, "no test events at all: did go test run?")
		status = 1
	}
	if roots := r.rootSkips(); len(roots) > 0 {
		word := "WARNING"
		if requireRoot {
			word = "ERROR"
		}
		fmt.Fprintf(w, "%s: %d test(s) skipped with %q (run as root to include them):\n", word, len(roots), RootSkipMarker)
		for _, s := range roots {
			fmt.Fprintf(w, "  %s\n", s)
		}
		if requireRoot && status == 0 {
			status = 3
		}
	}
	return status
}

func main() {
	requireRoot := flag.Bool("require-root", false, "exit 3 if a test was skipped because it "+RootSkipMarker)
	module := flag.String("module", "", "module path to strip from package names")
	quiet := flag.Bool("quiet", false, "no per-package lines, only failures and the summary")
	flag.Parse()
	os.Exit(run(os.Stdin, os.Stdout, options{requireRoot: *requireRoot, module: *module, quiet: *quiet}))
}

type options struct {
	requireRoot bool
	module      string
	quiet       bool
}

// run reads the event stream from in, reports to out and returns the exit status.
func run(in io.Reader, out io.Writer, o options) int {
	r := newReport()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// go test prints some errors (bad flags, setup failures) as plain
			// text; pass them through where they happened.
			fmt.Fprintln(out, string(line))
			continue
		}
		if p := r.handle(e); p != nil && (!o.quiet || p.action == "fail") {
			r.progress(out, p, o.module)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(out, "testreport: reading input: %v\n", err)
		return 1
	}
	return r.summary(out, o.module, o.requireRoot)
}
