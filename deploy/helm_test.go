package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/x0tta6bl4/x0t/control"
)

// helmVersion is the helm the tests run; .ci/run installs the same one.
const helmVersion = "v3.22.0"

const chart = "helm/x0t-control"

// helmBinary finds helm: on PATH, in GOPATH/bin, or built from the Go module
// proxy into the user's cache (about two minutes the first time, then kept).
// Only when that fails too is the test skipped, and never under CI.
func helmBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	if p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "helm"); fileExists(p) {
		return p
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "x0t-test-tools", "helm-"+helmVersion)
	bin := filepath.Join(dir, "helm")
	if fileExists(bin) {
		return bin
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", "helm.sh/helm/v3/cmd/helm@"+helmVersion)
	// Outside this module, with its own go.mod: no -mod or workspace settings.
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0")
	t.Logf("helm not found: go install helm.sh/helm/v3/cmd/helm@%s", helmVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		msg := fmt.Sprintf("helm is not installed and could not be built: %v\n%s", err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, helmBinary(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No user configuration or repositories: the chart has no dependencies.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

// object is one rendered Kubernetes object, as generic YAML.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }

// at walks a path of map keys and list indexes.
func at(v any, path ...any) any {
	if o, ok := v.(object); ok {
		v = map[string]any(o)
	}
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func parseObjects(t *testing.T, rendered []byte) []object {
	t.Helper()
	var out []object
	dec := yaml.NewDecoder(bytes.NewReader(rendered))
	for {
		// A plain map: yaml.v3 would give nested maps the named type too.
		var m map[string]any
		err := dec.Decode(&m)
		o := object(m)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("rendered chart is not YAML: %v\n%s", err, rendered)
		}
		if o == nil {
			continue // an empty document
		}
		if o["apiVersion"] == nil || o.kind() == "" || at(o, "metadata", "name") == nil {
			t.Errorf("object without apiVersion, kind or name: %v", o)
		}
		out = append(out, o)
	}
}

func TestHelmChart(t *testing.T) {
	helm(t, "lint", "--strict", chart)
	helm(t, "lint", "--strict", chart, "--set", "ingress.enabled=true,metrics.serviceMonitor.enabled=true,tls.existingSecret=x0t-tls,persistence.enabled=false")

	for _, tc := range []struct {
		name  string
		set   string
		kinds []string
	}{
		{"defaults", "", []string{"ServiceAccount", "Service", "Service", "StatefulSet"}},
		{"everything", "ingress.enabled=true,metrics.serviceMonitor.enabled=true,tls.existingSecret=x0t-tls,tls.extraSANs={vpn.example.org},otlpEndpoint=http://otel:4318",
			[]string{"ServiceAccount", "Service", "Service", "StatefulSet", "Ingress", "ServiceMonitor"}},
		{"no persistence, no metrics", "persistence.enabled=false,metrics.enabled=false,serviceAccount.create=false",
			[]string{"Service", "Service", "StatefulSet"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "rel", chart, "--namespace", "mesh"}
			if tc.set != "" {
				args = append(args, "--set", tc.set)
			}
			objs := parseObjects(t, helm(t, args...))
			var kinds []string
			byKind := map[string][]object{}
			for _, o := range objs {
				kinds = append(kinds, o.kind())
				byKind[o.kind()] = append(byKind[o.kind()], o)
			}
			if !sameSet(kinds, tc.kinds) {
				t.Fatalf("kinds %v, want %v", kinds, tc.kinds)
			}
			checkStatefulSet(t, byKind["StatefulSet"][0], tc.set)
			checkServices(t, byKind)
		})
	}
}

func checkStatefulSet(t *testing.T, sts object, set string) {
	t.Helper()
	pod := at(sts, "spec", "template", "spec")
	c := at(pod, "containers", 0)
	if c == nil {
		t.Fatal("no container")
	}
	if at(pod, "securityContext", "runAsNonRoot") != true {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	for k, want := range map[string]any{"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "runAsNonRoot": true} {
		if got := at(c, "securityContext", k); got != want {
			t.Errorf("container securityContext.%s = %v, want %v", k, got, want)
		}
	}
	if drop := at(c, "securityContext", "capabilities", "drop"); fmt.Sprint(drop) != "[ALL]" {
		t.Errorf("capabilities.drop = %v, want [ALL]", drop)
	}
	// Probes hit the control plane's real health endpoints over its TLS port.
	for probe, path := range map[string]string{"livenessProbe": control.PathHealthz, "readinessProbe": control.PathReadyz} {
		if got := at(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %v, want %s", probe, got, path)
		}
		if got := at(c, probe, "httpGet", "scheme"); got != "HTTPS" {
			t.Errorf("%s scheme %v, want HTTPS", probe, got)
		}
		if port := at(c, probe, "httpGet", "port"); !hasPort(c, port) {
			t.Errorf("%s port %v is not a container port", probe, port)
		}
	}
	// Every flag exists, and --data is where the data volume is mounted.
	var args []string
	for _, a := range at(c, "args").([]any) {
		args = append(args, a.(string))
	}
	if len(args) < 2 || args[0] != "control" || args[1] != "serve" {
		t.Fatalf("args %v, want control serve ...", args)
	}
	checkFlags(t, "chart args", flagsOf(t, "control", "serve"), args[2:])
	mounts := map[string]string{}
	for _, m := range at(c, "volumeMounts").([]any) {
		mounts[at(m, "name").(string)] = at(m, "mountPath").(string)
	}
	if !slices.Contains(args, "--data="+mounts["data"]) {
		t.Errorf("--data is not the data volume's mount %q: %v", mounts["data"], args)
	}
	if mounts["tmp"] != "/tmp" {
		t.Error("no writable /tmp under a read-only root file system")
	}
	// Every mount has a volume or a claim template, and persistence decides which.
	volumes := map[string]bool{}
	for _, v := range asList(at(pod, "volumes")) {
		volumes[at(v, "name").(string)] = true
	}
	claims := map[string]bool{}
	for _, v := range asList(at(sts, "spec", "volumeClaimTemplates")) {
		claims[at(v, "metadata", "name").(string)] = true
	}
	for name := range mounts {
		if !volumes[name] && !claims[name] {
			t.Errorf("mount %s has no volume", name)
		}
	}
	persistent := !strings.Contains(set, "persistence.enabled=false")
	if claims["data"] != persistent || volumes["data"] == persistent {
		t.Errorf("persistence %v: claim %v, volume %v", persistent, claims["data"], volumes["data"])
	}
	if strings.Contains(set, "tls.existingSecret") {
		if !slices.Contains(args, "--tls-cert="+mounts["tls"]+"/tls.crt") {
			t.Errorf("TLS secret mounted at %q but not passed: %v", mounts["tls"], args)
		}
	}
	if at(sts, "spec", "replicas") != 1 {
		t.Errorf("replicas %v: SQLite serves one replica", at(sts, "spec", "replicas"))
	}
}

// checkServices: every service port targets a container port, and the
// ServiceMonitor scrapes a port the service has.
func checkServices(t *testing.T, byKind map[string][]object) {
	t.Helper()
	c := at(byKind["StatefulSet"][0], "spec", "template", "spec", "containers", 0)
	svcPorts := map[string]bool{}
	for _, svc := range byKind["Service"] {
		for _, p := range asList(at(svc, "spec", "ports")) {
			svcPorts[fmt.Sprint(at(p, "name"))] = true
			if !hasPort(c, at(p, "targetPort")) {
				t.Errorf("service %v port %v targets %v, which the container lacks", at(svc, "metadata", "name"), at(p, "name"), at(p, "targetPort"))
			}
		}
	}
	for _, sm := range byKind["ServiceMonitor"] {
		for _, ep := range asList(at(sm, "spec", "endpoints")) {
			if !svcPorts[fmt.Sprint(at(ep, "port"))] || at(ep, "path") != "/metrics" {
				t.Errorf("ServiceMonitor endpoint %v", ep)
			}
		}
	}
	for _, ing := range byKind["Ingress"] {
		if at(ing, "spec", "rules", 0, "http", "paths", 0, "backend", "service", "port", "number") != at(byKind["Service"][0], "spec", "ports", 0, "port") {
			t.Errorf("ingress backend does not point at the service port")
		}
	}
}

func hasPort(container any, port any) bool {
	for _, p := range asList(at(container, "ports")) {
		if at(p, "name") == port || at(p, "containerPort") == port {
			return true
		}
	}
	return false
}

func asList(v any) []any { l, _ := v.([]any); return l }

// The CI script installs the helm version the tests expect.
func TestCIInstallsHelm(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("helm.sh/helm/v3/cmd/helm@"+helmVersion)) {
		t.Errorf(".ci/run does not install helm %s", helmVersion)
	}
}
