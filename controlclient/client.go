// Package controlclient is the Go client of the control plane's API: the
// administrative calls (with an API key) used by the x0t CLI, and the node
// calls (signed with the node's hybrid key) used by the node agent.
//
// TLS trust is the system pool (so SSL_CERT_FILE=DIR/tls.crt trusts a
// control plane's self-signed certificate) or, with Options.Fingerprint, the
// one server certificate whose SHA-256 matches.
package controlclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Options configure a Client.
type Options struct {
	// APIKey authenticates administrative calls.
	APIKey string
	// Fingerprint pins the server certificate: SHA-256 of its DER encoding,
	// hex (colons and case are ignored). Empty means the system trust pool.
	Fingerprint string
	// Timeout bounds each call except netmap streams (default 30 s).
	Timeout time.Duration
	// HTTPClient replaces the client built from the options (tests).
	HTTPClient *http.Client
	// UserAgent names the caller (default x0t-controlclient).
	UserAgent string
}

// Client talks to one control plane.
type Client struct {
	base    *url.URL
	hc      *http.Client
	apiKey  string
	timeout time.Duration
	ua      string
}

// New returns a client for the control plane at baseURL (https://host:port).
func New(baseURL string, opt Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("controlclient: control plane URL %q: want https://host:port", baseURL)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("controlclient: control plane URL %q: only https is supported", baseURL)
	}
	c := &Client{base: u, hc: opt.HTTPClient, apiKey: opt.APIKey, timeout: opt.Timeout, ua: opt.UserAgent}
	if c.timeout == 0 {
		c.timeout = 30 * time.Second
	}
	if c.ua == "" {
		c.ua = "x0t-controlclient"
	}
	if c.hc == nil {
		tc, err := TLSConfig(opt.Fingerprint)
		if err != nil {
			return nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		tr.ForceAttemptHTTP2 = true
		c.hc = &http.Client{Transport: tr}
	}
	return c, nil
}

// TLSConfig returns the client TLS configuration: the system pool, or only
// the certificate with the given SHA-256 fingerprint.
func TLSConfig(fingerprint string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS13}
	if fingerprint == "" {
		return tc, nil
	}
	want, err := hex.DecodeString(strings.ToLower(strings.ReplaceAll(strings.TrimSpace(fingerprint), ":", "")))
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("controlclient: fingerprint %q: want 64 hex digits (SHA-256)", fingerprint)
	}
	// The pin replaces chain and name verification: it names the one
	// certificate to accept.
	tc.InsecureSkipVerify = true
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("controlclient: server sent no certificate")
		}
		got := sha256.Sum256(cs.PeerCertificates[0].Raw)
		if subtle.ConstantTimeCompare(got[:], want) != 1 {
			return fmt.Errorf("controlclient: server certificate SHA-256 %x does not match the pinned fingerprint", got)
		}
		return nil
	}
	return tc, nil
}

// Error is an error answer of the API (an RFC 9457 problem).
type Error struct {
	Status int           `json:"status"`
	Title  string        `json:"title"`
	Detail string        `json:"detail"`
	Errors []ErrorDetail `json:"errors,omitempty"`
}

// ErrorDetail locates one problem in a request.
type ErrorDetail struct {
	Message  string `json:"message"`
	Location string `json:"location,omitempty"`
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	for i, d := range e.Errors {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Errors)-i)
			break
		}
		b.WriteString("; ")
		if d.Location != "" {
			b.WriteString(d.Location + ": ")
		}
		b.WriteString(d.Message)
	}
	return b.String()
}

// StatusOf returns the HTTP status of an API error (0 for other errors).
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// IsNotFound reports a 404 answer.
func IsNotFound(err error) bool { return StatusOf(err) == http.StatusNotFound }

// request describes one call.
type request struct {
	method string
	path   string
	query  url.Values
	body   any    // encoded as JSON unless raw is set
	raw    []byte // a body sent as it is
	header http.Header
	sign   func(*http.Request, []byte) // node signature
}

// do performs a call and decodes a JSON answer into out (if not nil). It
// returns the response headers.
func (c *Client) do(ctx context.Context, r request, out any) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return resp.Header, nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return nil, fmt.Errorf("controlclient: %s %s: decode answer: %w", r.method, r.path, err)
	}
	return resp.Header, nil
}

// send performs a call and returns a successful response (the caller
// closes its body) or the API error.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	u := *c.base
	u.Path = c.base.Path + r.path
	if len(r.query) > 0 {
		u.RawQuery = r.query.Encode()
	}
	body := r.raw
	if r.body != nil {
		var err error
		if body, err = json.Marshal(r.body); err != nil {
			return nil, fmt.Errorf("controlclient: encode %s body: %w", r.path, err)
		}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("controlclient: %w", err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if r.sign != nil {
		r.sign(req, body)
	} else if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("controlclient: %s %s: %w", r.method, r.path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &Error{}
	if json.Unmarshal(data, e) != nil || e.Status == 0 {
		e = &Error{Detail: strings.TrimSpace(string(data))}
	}
	e.Status = resp.StatusCode
	return nil, e
}
