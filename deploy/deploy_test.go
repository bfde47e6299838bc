package deploy

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// repoRoot is the module root, two levels up from nothing: the test runs in
// deploy/.
const repoRoot = ".."

var (
	buildOnce sync.Once
	buildDir  string // removed by TestMain
	builtX0t  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// x0tBinary builds cmd/x0t once, the way the Dockerfile does (static, no cgo),
// so the tests can check the image's binary and ask it which flags exist.
func x0tBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		args, env, err := dockerGoBuild()
		if err != nil {
			buildErr = err
			return
		}
		if buildDir, err = os.MkdirTemp("", "x0t-deploy-test-"); err != nil {
			buildErr = err
			return
		}
		builtX0t = filepath.Join(buildDir, "x0t")
		cmd := exec.Command("go", append(args[1:], "-o", builtX0t, "./cmd/x0t")...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%s: %w\n%s", cmd, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtX0t
}

// flagsOf returns the long flags `x0t ARGS... --help` lists (global ones too).
func flagsOf(t *testing.T, args ...string) map[string]bool {
	t.Helper()
	out, err := exec.Command(x0tBinary(t), append(args, "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("x0t %s --help: %v\n%s", strings.Join(args, " "), err, out)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if !flags["log-level"] || !flags["help"] {
		t.Fatalf("could not read the flags of x0t %s:\n%s", strings.Join(args, " "), out)
	}
	return flags
}

// checkFlags fails t for every --flag in args that the command does not have.
func checkFlags(t *testing.T, where string, known map[string]bool, args []string) {
	t.Helper()
	n := 0
	for _, a := range args {
		a = strings.Trim(a, `"'`)
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(a[2:], "=")
		n++
		if !known[name] {
			t.Errorf("%s passes --%s, which x0t does not have", where, name)
		}
	}
	if n == 0 {
		t.Errorf("%s: no flags found to check", where)
	}
}

// ---------------------------------------------------------------- systemd

// unit is a parsed systemd unit: section -> key -> values in order (keys
// like SystemCallFilter= may repeat).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", path, ln, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unit) get(key string) string {
	v := u["Service"][key]
	if len(v) == 0 {
		return "<unset>"
	}
	return v[len(v)-1]
}

func TestSystemdUnits(t *testing.T) {
	// Options every unit must have, and per unit what differs.
	common := map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
		"ProtectControlGroups": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
		"RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
		"LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
		"UMask": "0077", "Restart": "on-failure",
	}
	units := map[string]struct {
		want     map[string]string
		families []string
		command  []string // the x0t subcommand ExecStart runs
		env      string   // the example environment file and its args variable
		envVar   string
	}{
		"x0t-node.service": {
			want: map[string]string{
				"User": "x0t", "Group": "x0t", "StateDirectory": "x0t", "RuntimeDirectory": "x0t",
				"CapabilityBoundingSet": "CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
				"AmbientCapabilities":   "CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
				"DevicePolicy":          "closed", "DeviceAllow": "/dev/net/tun rw",
			},
			families: []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"},
			command:  []string{"node", "up"},
			env:      "node.env.example", envVar: "X0T_NODE_ARGS",
		},
		"x0t-control.service": {
			want: map[string]string{
				"DynamicUser": "yes", "StateDirectory": "x0t-control",
				"CapabilityBoundingSet": "", "AmbientCapabilities": "",
				"PrivateDevices": "yes", "PrivateUsers": "yes",
			},
			families: []string{"AF_UNIX", "AF_INET", "AF_INET6"},
			command:  []string{"control", "serve"},
			env:      "control.env.example", envVar: "X0T_CONTROL_ARGS",
		},
	}
	for name, tc := range units {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("systemd", name)
			u := parseUnit(t, path)
			for k, v := range common {
				if got := u.get(k); got != v {
					t.Errorf("%s=%s, want %s", k, got, v)
				}
			}
			for k, v := range tc.want {
				if got := u.get(k); got != v {
					t.Errorf("%s=%s, want %q", k, got, v)
				}
			}
			if fams := strings.Fields(u.get("RestrictAddressFamilies")); !sameSet(fams, tc.families) {
				t.Errorf("RestrictAddressFamilies=%v, want %v", fams, tc.families)
			}
			if f := u["Service"]["SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
				t.Errorf("SystemCallFilter=%v, want @system-service first", f)
			}
			if u["Install"]["WantedBy"] == nil {
				t.Error("no [Install] WantedBy=")
			}
			exec := strings.Fields(u.get("ExecStart"))
			if len(exec) < 3 || exec[0] != "/usr/local/bin/x0t" || !slices.Equal(exec[1:3], tc.command) {
				t.Fatalf("ExecStart=%v, want /usr/local/bin/x0t %v ...", exec, tc.command)
			}
			flags := flagsOf(t, tc.command...)
			checkFlags(t, name+" ExecStart", flags, exec[3:])
			env, err := os.ReadFile(filepath.Join("systemd", tc.env))
			if err != nil {
				t.Fatal(err)
			}
			m := regexp.MustCompile(`(?m)^` + tc.envVar + `=(.*)$`).FindSubmatch(env)
			if m == nil {
				t.Fatalf("%s does not set %s", tc.env, tc.envVar)
			}
			checkFlags(t, tc.env, flags, strings.Fields(string(m[1])))
		})
	}

	// systemd's own checks where systemd is installed (Debian's image has it;
	// it need not be running): the units load, and their exposure score stays
	// low. ExecStart must name an existing binary for verify: the one built.
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the units were checked by the parser only")
	}
	dir := t.TempDir()
	bin := x0tBinary(t)
	var paths []string
	for name := range units {
		b, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte("/usr/local/bin/x0t"), []byte(bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, analyze, append([]string{"verify"}, paths...)...).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure 0 (locked down) .. 10 (unprotected); a VPN node needs the
	// network and CAP_NET_ADMIN, the control plane only the network.
	maxExposure := map[string]float64{"x0t-node.service": 2.5, "x0t-control.service": 1.5}
	for _, p := range paths {
		out, err := exec.CommandContext(ctx, analyze, "security", "--offline=yes", "--no-pager", p).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security %s: %v\n%s", filepath.Base(p), err, out)
			continue
		}
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s: no exposure level in:\n%s", filepath.Base(p), out)
			continue
		}
		var level float64
		fmt.Sscan(string(m[1]), &level)
		if max := maxExposure[filepath.Base(p)]; level > max {
			t.Errorf("%s: exposure %.1f, want at most %.1f:\n%s", filepath.Base(p), level, max, out)
		} else {
			t.Logf("%s: systemd exposure level %.1f", filepath.Base(p), level)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// ---------------------------------------------------------------- Dockerfile

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	stage     string // the FROM ... AS name this instruction belongs to
	cmd, args string
}

func parseDockerfile(t *testing.T) []instruction {
	t.Helper()
	ins, err := readDockerfile()
	if err != nil {
		t.Fatal(err)
	}
	return ins
}

func readDockerfile() ([]instruction, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	var out []instruction
	stage, cur := "", ""
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur += strings.TrimSuffix(trimmed, `\`) + " "
			continue
		}
		cur += trimmed
		cmd, args, _ := strings.Cut(cur, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			if f := strings.Fields(args); len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stage = f[2]
			}
		}
		out = append(out, instruction{stage, cmd, strings.TrimSpace(args)})
		cur = ""
	}
	return out, nil
}

// dockerGoBuild returns the Dockerfile's go build command and its
// environment assignments, so the test builds exactly what the image ships.
func dockerGoBuild() (args, env []string, err error) {
	ins, err := readDockerfile()
	if err != nil {
		return nil, nil, err
	}
	for _, in := range ins {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		first, _, _ := strings.Cut(in.args, "&&")
		for _, f := range shellWords(first) {
			switch {
			case len(args) == 0 && strings.Contains(f, "="):
				env = append(env, f)
			case f == "-o":
				return args, env, nil // the output and package: the caller's
			default:
				args = append(args, f)
			}
		}
	}
	return nil, nil, errors.New("Dockerfile: no RUN ... go build ... -o")
}

// shellWords splits a command line as sh would for the simple cases a
// Dockerfile uses: blanks separate words, quotes group and are removed.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t)
	stages := map[string][]instruction{}
	var order []string
	for _, in := range ins {
		if in.cmd == "FROM" {
			order = append(order, in.stage)
		}
		stages[in.stage] = append(stages[in.stage], in)
	}
	if !slices.Equal(order, []string{"build", "node", "control"}) {
		t.Fatalf("stages %v, want build, node, control (control last: the default target)", order)
	}
	from := func(stage string) string { return stages[stage][0].args }
	for _, s := range []string{"node", "control"} {
		if base := from(s); !strings.HasPrefix(base, "gcr.io/distroless/static") && !strings.HasPrefix(base, "scratch") {
			t.Errorf("stage %s is FROM %s: want distroless/static or scratch", s, base)
		}
	}
	user := func(stage string) string {
		u := "root"
		for _, in := range stages[stage] {
			if in.cmd == "USER" {
				u = in.args
			}
		}
		if strings.HasSuffix(from(stage), ":nonroot") && u == "root" {
			u = "nonroot (base image)"
		}
		return u
	}
	if u := user("control"); u != "65532:65532" && u != "nonroot" && u != "nonroot:nonroot" {
		t.Errorf("control stage runs as %s, want nonroot", u)
	}
	args, env, err := dockerGoBuild()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(env, "CGO_ENABLED=0") || args[0] != "go" || args[1] != "build" {
		t.Errorf("build command %v %v: want CGO_ENABLED=0 go build", env, args)
	}

	// The image's binary is static: no interpreter, no shared libraries.
	f, err := elf.Open(x0tBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	if runtime.GOARCH == "amd64" && f.Machine != elf.EM_X86_64 {
		t.Errorf("machine %v", f.Machine)
	}

	// Every flag of the default commands exists.
	for _, s := range []string{"node", "control"} {
		for _, in := range stages[s] {
			if in.cmd != "CMD" {
				continue
			}
			var argv []string
			for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(in.args, -1) {
				argv = append(argv, m[1])
			}
			if len(argv) < 2 {
				t.Fatalf("stage %s: CMD %s is not an exec-form list", s, in.args)
			}
			checkFlags(t, "Dockerfile "+s+" CMD", flagsOf(t, argv[:2]...), argv[2:])
		}
	}
}
