package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// newGlobal parses args as the root command's persistent flags would.
func newGlobal(t *testing.T, args ...string) (*globalFlags, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	g := &globalFlags{stderr: &buf}
	fs := pflag.NewFlagSet("x0t", pflag.ContinueOnError)
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return g, &buf
}

func TestLogFormatJSON(t *testing.T) {
	g, buf := newGlobal(t, "--log-format", "json", "--log-level", "debug")
	log, err := g.logger("")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("netmap installed", "version", 7)
	log.Info("node up", "id", "abcd")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), buf)
	}
	var rec struct {
		Level, Msg string
		Version    int
	}
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[0])
	}
	if rec.Level != "DEBUG" || rec.Msg != "netmap installed" || rec.Version != 7 {
		t.Errorf("record %+v", rec)
	}
}

func TestLogFormatTextIsDefault(t *testing.T) {
	g, buf := newGlobal(t)
	log, err := g.logger("")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.Info("shown", "k", "v")
	if got := buf.String(); !strings.Contains(got, "level=INFO msg=shown k=v") || strings.Contains(got, "hidden") {
		t.Errorf("text log at info: %q", got)
	}
}

// The level comes from the flag, else X0T_LOG_LEVEL, else the config file,
// else info; the format from the flag, else X0T_LOG_FORMAT.
func TestLogSettingsPrecedence(t *testing.T) {
	for _, tc := range []struct {
		name            string
		args            []string
		envLevel, envFm string
		file            string
		debug, warnOnly bool
		json            bool
	}{
		{name: "default"},
		{name: "file", file: "debug", debug: true},
		{name: "env over file", envLevel: "warn", file: "debug", warnOnly: true},
		{name: "flag over env and file", args: []string{"--log-level", "debug"}, envLevel: "warn", file: "error", debug: true},
		{name: "env format", envFm: "json", json: true},
		{name: "flag format over env", args: []string{"--log-format", "text"}, envFm: "json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("X0T_LOG_LEVEL", tc.envLevel)
			t.Setenv("X0T_LOG_FORMAT", tc.envFm)
			g, buf := newGlobal(t, tc.args...)
			log, err := g.logger(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("d")
			log.Info("i")
			log.Warn("w")
			out := buf.String()
			if strings.Contains(out, `"d"`) || strings.Contains(out, "msg=d\n") {
				if !tc.debug {
					t.Errorf("debug shown: %s", out)
				}
			} else if tc.debug {
				t.Errorf("debug not shown: %s", out)
			}
			if hasInfo := strings.Contains(out, "msg=i\n") || strings.Contains(out, `"i"`); hasInfo == tc.warnOnly {
				t.Errorf("info shown=%v at warn-only=%v: %s", hasInfo, tc.warnOnly, out)
			}
			if isJSON := strings.HasPrefix(out, "{"); isJSON != tc.json {
				t.Errorf("json=%v, want %v: %s", isJSON, tc.json, out)
			}
		})
	}
}

func TestLogSettingsRejected(t *testing.T) {
	for _, args := range [][]string{{"--log-format", "xml"}, {"--log-level", "loud"}} {
		g, _ := newGlobal(t, args...)
		if _, err := g.logger(""); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
