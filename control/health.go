package control

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
)

// Health endpoints for process supervisors, load balancers and Kubernetes
// probes. They sit outside /api/v1 and need no API key: a probe has none, and
// they reveal nothing but "up" or "not ready".
const (
	PathHealthz = "/healthz" // liveness: the process serves HTTP
	PathReadyz  = "/readyz"  // readiness: the store answers a query too
)

// readyTimeout bounds the store query: a probe that hangs is worse than one
// that says no.
const readyTimeout = 2 * time.Second

func (s *Server) registerHealth(r chi.Router) {
	r.Get(PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte("ok\n"))
	})
	r.Get(PathReadyz, func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		w.Header().Set("Cache-Control", "no-store")
		if _, err := s.store.LastSeq(ctx); err != nil {
			s.log.WarnContext(ctx, "readiness check: store does not answer", "err", err)
			writeProblem(w, http.StatusServiceUnavailable, "the store does not answer")
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
}
