package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humachi"
	"github.com/go-chi/chi/v5"

	"github.com/x0tta6bl4/x0t/dashboard"
	"github.com/x0tta6bl4/x0t/store"
)

// Request size limits. Every operation has its own (opDef.MaxBody); the
// largest bounds what the server reads before routing.
const (
	defaultMaxBody = 64 << 10
	maxPolicyBody  = 2 << 20
	maxHeartbeat   = 2 << 20
	maxRequestBody = 4 << 20
)

// routes builds the HTTP handler: chi for the plumbing, huma for the API.
func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.instrument, s.recoverer, withRequest, refuseOversized)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "no such endpoint")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusMethodNotAllowed, "method not allowed on this endpoint")
	})

	cfg := huma.DefaultConfig("x0t control plane", Version)
	cfg.CreateHooks = nil // no $schema fields or Link headers in responses
	cfg.OpenAPIPath = "/api/v1/openapi"
	cfg.DocsPath = "/api/v1/docs"
	cfg.SchemasPath = "/api/v1/schemas"
	cfg.Info.Description = "Mesh-as-a-Service control plane of x0tta6bl4, a post-quantum mesh VPN. " +
		"Administrative endpoints take an API key ('Authorization: Bearer KEY'); node endpoints take a " +
		"request signature by the node's hybrid key (see package api). Errors are RFC 9457 problem details."
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"apiKey": {Type: "http", Scheme: "bearer", Description: "An organization API key (x0t_key_...)."},
		"nodeSignature": {Type: "apiKey", In: "header", Name: "Authorization",
			Description: "X0T-Node id=<node id>,ts=<unix seconds>,sig=<base64url hybrid signature over method, path, time and body hash>."},
	}
	s.registerHealth(r) // before huma: probes carry no API key
	hapi := humachi.New(r, cfg)
	hapi.UseMiddleware(s.authMiddleware(hapi))

	s.registerOrgs(hapi)
	s.registerMeshes(hapi)
	s.registerTokens(hapi)
	s.registerNodes(hapi)
	s.registerACL(hapi)
	s.registerAudit(hapi)
	s.registerNodeAPI(hapi)
	s.registerTopology(hapi)

	// The web dashboard: its page at / and its assets under /ui/; any
	// other path stays the API's (a JSON problem when unknown).
	dash := dashboard.Handler()
	r.Get("/", dash.ServeHTTP)
	r.Get(dashboard.Prefix+"*", dash.ServeHTTP)
	return r
}

// opDef describes an operation; register turns it into a huma operation.
type opDef struct {
	ID, Method, Path, Summary, Desc, Tag string
	Role                                 role // minimum role of an API-key operation; roleNone for node operations
	Operator                             bool // only keys of the operator organization
	Status                               int  // success status (default 200)
	MaxBody                              int64
	Node                                 bool // signed by a node
	// ParsedBody skips huma's schema check of the body: its type decodes
	// itself strictly (policy.Policy) and its errors are more precise.
	ParsedBody bool
	Errors     []int // error statuses besides the common ones
}

func register[I, O any](s *Server, hapi huma.API, d opDef, h func(context.Context, *I) (*O, error)) {
	op := huma.Operation{
		OperationID: d.ID, Method: d.Method, Path: d.Path, Summary: d.Summary, Description: d.Desc,
		Tags: []string{d.Tag}, DefaultStatus: d.Status, MaxBodyBytes: d.MaxBody, Metadata: map[string]any{},
		Errors: []int{http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge,
			http.StatusUnprocessableEntity, http.StatusTooManyRequests},
	}
	if op.MaxBodyBytes == 0 {
		op.MaxBodyBytes = defaultMaxBody
	}
	switch {
	case d.Role != roleNone:
		op.Metadata[metaRole] = d.Role
		op.Security = []map[string][]string{{"apiKey": {}}}
		op.Errors = append(op.Errors, http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict)
		s.perms[d.ID] = d.Role
	case d.Node:
		op.Security = []map[string][]string{{"nodeSignature": {}}}
		op.Errors = append(op.Errors, http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict)
	}
	op.Errors = append(op.Errors, d.Errors...)
	if d.Operator {
		op.Metadata[metaOperator] = true
	}
	op.SkipValidateBody = d.ParsedBody
	huma.Register(hapi, op, h)
	// A RawBody field (kept for the node's signature) makes huma document
	// an octet-stream body too; the operation takes JSON only.
	if o := registered(hapi, d.Method, d.Path); o != nil && o.RequestBody != nil && o.RequestBody.Content["application/json"] != nil {
		delete(o.RequestBody.Content, "application/octet-stream")
	}
}

// registered returns an operation of the OpenAPI document.
func registered(hapi huma.API, method, path string) *huma.Operation {
	p := hapi.OpenAPI().Paths[path]
	if p == nil {
		return nil
	}
	switch method {
	case http.MethodGet:
		return p.Get
	case http.MethodPost:
		return p.Post
	case http.MethodPut:
		return p.Put
	case http.MethodPatch:
		return p.Patch
	case http.MethodDelete:
		return p.Delete
	}
	return nil
}

// Permissions returns each API-key operation's minimum role.
func (s *Server) Permissions() map[string]string {
	out := map[string]string{}
	for id, r := range s.perms {
		out[id] = r.String()
	}
	return out
}

// Errors shared by the handlers. A missing object and another tenant's
// object get the same answer.
func notFound(what string) error { return huma.Error404NotFound(what + " not found") }

func forbidden(format string, a ...any) error {
	return huma.Error403Forbidden(fmt.Sprintf(format, a...))
}

func invalid(field, format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	return huma.Error422UnprocessableEntity(msg, &huma.ErrorDetail{Location: field, Message: msg})
}

func conflict(format string, a ...any) error {
	return huma.Error409Conflict(fmt.Sprintf(format, a...))
}

// internal logs an unexpected error and hides it from the client.
func (s *Server) internal(ctx context.Context, err error) error {
	var se huma.StatusError
	if errors.As(err, &se) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return huma.NewError(499, "request cancelled")
	}
	s.log.ErrorContext(ctx, "request failed", "err", err)
	return huma.Error500InternalServerError("internal error")
}

// storeErr maps store errors: a conflict on a unique key is the caller's.
func (s *Server) storeErr(ctx context.Context, err error, what string) error {
	if errors.Is(err, store.ErrConflict) {
		return conflict("%s already exists", what)
	}
	return s.internal(ctx, err)
}

// writeProblem writes an RFC 9457 problem outside huma (routing, panics).
func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(&huma.ErrorModel{Title: http.StatusText(status), Status: status, Detail: detail})
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeProblem(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// withRequest makes the request available to handlers (client address,
// headers and path for node signatures).
func withRequest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxRequest, r)))
	})
}

// refuseOversized answers 413 before reading a body that announces itself
// larger than any operation takes.
func refuseOversized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxRequestBody {
			writeProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is too large (limit %d bytes)", maxRequestBody))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody+1)
		next.ServeHTTP(w, r)
	})
}

// PageParams are the paging query parameters of list operations.
type PageParams struct {
	Limit int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Items per page."`
	After string `query:"after" maxLength:"64" pattern:"^[a-z0-9_]*$" doc:"Cursor: the 'next' of the previous page."`
}
