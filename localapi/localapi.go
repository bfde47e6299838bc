// Package localapi is the node agent's local control socket: `x0t status`,
// `x0t routes`, `x0t health` and `x0t ping` talk to a running node through it.
// It is HTTP with JSON over a unix socket whose file permissions decide who may
// ask (root, and a configured group).
package localapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/x0tta6bl4/x0t/heal"
	"github.com/x0tta6bl4/x0t/node"
)

// DefaultSocket is where a node listens unless told otherwise.
const DefaultSocket = "/run/x0t/x0t.sock"

// Paths.
const (
	PathStatus = "/v1/status"
	PathRoutes = "/v1/routes"
	PathHealth = "/v1/health"
	PathPing   = "/v1/ping"
)

// MaxPingTimeout bounds how long one ping request may wait for its echo.
const MaxPingTimeout = 5 * time.Second

// Status is what `x0t status` shows.
type Status struct {
	Name     string            `json:"name"`
	ID       string            `json:"id"`
	Mesh     string            `json:"mesh"`
	Addrs    []string          `json:"addresses"`
	Listen   string            `json:"listen"`
	Suite    string            `json:"suite"`
	Uptime   time.Duration     `json:"uptime_ns"`
	Health   string            `json:"health"`
	Peers    []node.PeerStatus `json:"peers"`
	Counters map[string]uint64 `json:"counters"`
}

// Routes is what `x0t routes` shows.
type Routes struct {
	Routes []node.RouteInfo `json:"routes"`
	Links  []node.LinkInfo  `json:"links"`
}

// Server serves one node's local API.
type Server struct {
	node  *node.Node
	info  func() Status // static fields (name, mesh, addresses...) filled by the caller
	start time.Time
	srv   *http.Server
	path  string
}

// Listen creates the socket (replacing a stale one, refusing a live one),
// readable and writable by root and, if group is not empty, that group.
func Listen(path, group string, n *node.Node, info func() Status, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("localapi: %s is in use by a running node (use --socket)", path)
	}
	os.Remove(path) // a stale socket from a node that died
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	if err := restrict(path, group); err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{node: n, info: info, start: time.Now(), path: path}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathStatus, s.status)
	mux.HandleFunc("GET "+PathRoutes, s.routes)
	mux.HandleFunc("GET "+PathHealth, s.health)
	mux.HandleFunc("GET "+PathPing, s.ping)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("local API stopped", "err", err)
		}
	}()
	return s, nil
}

// restrict gives the socket mode 0660 and, if a group is named, that group.
func restrict(path, group string) error {
	if err := os.Chmod(path, 0o660); err != nil {
		return fmt.Errorf("localapi: %w", err)
	}
	if group == "" {
		return nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return fmt.Errorf("localapi: group %q: %w", group, err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("localapi: %w", err)
	}
	return nil
}

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	err := s.srv.Close()
	os.Remove(s.path)
	return err
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.info()
	st.Uptime = time.Since(s.start)
	st.Peers = s.node.Peers()
	st.Counters = s.node.Stats().Snapshot()
	st.Health = string(s.node.Health(0).Health.State)
	writeJSON(w, st)
}

func (s *Server) routes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, Routes{Routes: s.node.Routes(), Links: s.node.Links()})
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	limit := 20
	if v, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && v >= 0 && v <= 1000 {
		limit = v
	}
	writeJSON(w, s.node.Health(limit))
}

// ping sends one echo: ?peer=NAME|ADDRESS|ID&path=route|alternate&seq=N&timeout=DURATION.
// No reply is not an error of the API: the result says so in its err field.
func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	path := cmp.Or(q.Get("path"), node.PathRoute)
	if path != node.PathRoute && path != node.PathAlternate {
		http.Error(w, fmt.Sprintf("path must be %q or %q", node.PathRoute, node.PathAlternate), http.StatusBadRequest)
		return
	}
	seq, err := strconv.ParseUint(cmp.Or(q.Get("seq"), "1"), 10, 16)
	if err != nil {
		http.Error(w, "seq must be a number from 0 to 65535", http.StatusBadRequest)
		return
	}
	timeout, err := time.ParseDuration(cmp.Or(q.Get("timeout"), "2s"))
	if err != nil || timeout <= 0 || timeout > MaxPingTimeout {
		http.Error(w, fmt.Sprintf("timeout must be a duration above 0 and at most %v", MaxPingTimeout), http.StatusBadRequest)
		return
	}
	p, err := s.node.FindPeer(q.Get("peer"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	res, err := s.node.Ping(ctx, p, path, uint16(seq))
	switch {
	case errors.Is(err, node.ErrNoAlternate):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil && res.Err == "":
		res.Err = err.Error()
	}
	writeJSON(w, res)
}

// Client talks to a node's local API.
type Client struct {
	hc *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://x0t"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("no node answers on the local socket (is it running? --socket?): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return &statusError{code: resp.StatusCode, status: resp.Status, msg: strings.TrimSpace(string(b))}
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Status asks for the node's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.get(ctx, PathStatus, &s)
}

// Routes asks for the routing table and links.
func (c *Client) Routes(ctx context.Context) (*Routes, error) {
	var r Routes
	return &r, c.get(ctx, PathRoutes, &r)
}

// Ping sends one echo to peer (a name, overlay address or ID) on path
// (node.PathRoute or node.PathAlternate) and waits up to timeout.
func (c *Client) Ping(ctx context.Context, peer, path string, seq uint16, timeout time.Duration) (*node.PingResult, error) {
	q := url.Values{"peer": {peer}, "path": {path}, "seq": {strconv.Itoa(int(seq))}, "timeout": {timeout.String()}}
	var res node.PingResult
	err := c.get(ctx, PathPing+"?"+q.Encode(), &res)
	var se *statusError
	if errors.As(err, &se) {
		switch se.code {
		case http.StatusNotFound:
			return nil, fmt.Errorf("%w (%s)", node.ErrNoSuchPeer, se.msg)
		case http.StatusConflict:
			return nil, fmt.Errorf("%w (%s)", node.ErrNoAlternate, se.msg)
		}
	}
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// statusError is an answer other than 200 from the local API.
type statusError struct {
	code        int
	status, msg string
}

func (e *statusError) Error() string { return fmt.Sprintf("local API: %s: %s", e.status, e.msg) }

// Health asks for the health state and recent incidents.
func (c *Client) Health(ctx context.Context, limit int) (*heal.Snapshot, error) {
	var h heal.Snapshot
	return &h, c.get(ctx, PathHealth+"?limit="+strconv.Itoa(limit), &h)
}
