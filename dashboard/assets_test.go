package dashboard

import (
	"io/fs"
	"net/http/httptest"
	"regexp"
	"testing"
)

var (
	importRE = regexp.MustCompile(`(?m)^(?:import .*|\}) from '\./([a-z]+\.js)';$`)
	srcRE    = regexp.MustCompile(`(?:src|href)="(/[^"]*)"`)
	urlRE    = regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}`)
)

// TestAssetsSelfContained follows what the page loads (index.html's
// references, then the modules' imports): every file is served. And no
// embedded file refers to anything on the internet (the SVG namespace is a
// name, not a fetch).
func TestAssetsSelfContained(t *testing.T) {
	h := Handler()
	get := func(p string) (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", p, nil))
		return w.Code, w.Body.String()
	}
	_, index := get("/")
	var pending []string
	for _, m := range srcRE.FindAllStringSubmatch(index, -1) {
		pending = append(pending, m[1])
	}
	seen := map[string]bool{}
	for len(pending) > 0 {
		p := pending[0]
		pending = pending[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		code, body := get(p)
		if code != 200 {
			t.Errorf("%s: %d", p, code)
			continue
		}
		for _, m := range importRE.FindAllStringSubmatch(body, -1) {
			pending = append(pending, Prefix+m[1])
		}
	}
	for _, p := range []string{"/ui/app.js", "/ui/api.js", "/ui/ui.js", "/ui/graph.js", "/ui/style.css", "/ui/favicon.svg"} {
		if !seen[p] {
			t.Errorf("%s is not loaded by the page (loaded: %v)", p, seen)
		}
	}
	n := 0
	err := fs.WalkDir(files, "ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		for _, u := range urlRE.FindAllString(string(b), -1) {
			if u != "http://www.w3.org" {
				t.Errorf("%s refers to %s", p, u)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 6 {
		t.Fatalf("%d embedded files", n)
	}
}
