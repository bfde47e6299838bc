// Package dashboard is the control plane's web dashboard: a single page of
// plain HTML, CSS and JavaScript modules, embedded in the binary so it works
// without internet access, that talks to the REST API under /api/v1 with the
// API key the user signs in with. The control plane serves it at / and its
// assets under /ui/.
package dashboard

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed ui
var files embed.FS

// Prefix is the path the assets are served under.
const Prefix = "/ui/"

// csp allows nothing from elsewhere: the page's scripts, styles and requests
// all go to the control plane that served it.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the dashboard: index.html at / and the assets under
// Prefix. Any other path is not found.
func Handler() http.Handler {
	ui, err := fs.Sub(files, "ui")
	if err != nil {
		panic(err)
	}
	index, err := fs.ReadFile(ui, "index.html")
	if err != nil {
		panic(err)
	}
	assets := http.StripPrefix(Prefix, http.FileServerFS(ui))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		switch p := r.URL.Path; {
		case p == "/" || p == "/index.html":
			http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(index))
		case strings.HasPrefix(p, Prefix) && !strings.HasSuffix(p, "/") && path.Clean(p) == p:
			assets.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}
