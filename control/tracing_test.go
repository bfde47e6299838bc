package control_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/x0tta6bl4/x0t/api"
	"github.com/x0tta6bl4/x0t/control"
	"github.com/x0tta6bl4/x0t/controlclient"
)

// collector is an in-process OTLP/HTTP trace receiver: it decodes what the
// exporter posts to /v1/traces as protobuf.
type collector struct {
	mu       sync.Mutex
	spans    []*tracepb.Span
	resource []*commonpb.KeyValue
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "not here", http.StatusNotFound)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		c.resource = append(c.resource, rs.GetResource().GetAttributes()...)
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (c *collector) named(name string) []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range c.spans {
		if s.GetName() == name {
			out = append(out, s)
		}
	}
	return out
}

func attr(kvs []*commonpb.KeyValue, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			if v, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_IntValue); ok {
				return strconv.FormatInt(v.IntValue, 10), true
			}
			return kv.GetValue().GetStringValue(), true
		}
	}
	return "", false
}

// otelEnv points the standard OTEL_* variables at url for this test only,
// clearing any that would change where or how spans go.
func otelEnv(t *testing.T, url string) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_HEADERS"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
}

// TestTracesExported runs a control plane with OTEL_EXPORTER_OTLP_ENDPOINT
// pointing at an in-process collector, enrolls a node (and fails to enroll
// another), makes an API request carrying a W3C traceparent, shuts the
// server down (which flushes the exporter) and checks the spans: one server
// span per request named after its route with its status, an enroll span
// under the request's, one child per step, and no secret anywhere.
func TestTracesExported(t *testing.T) {
	col := &collector{}
	cs := httptest.NewServer(col)
	defer cs.Close()
	otelEnv(t, cs.URL)

	ts := startServer(t, nil)
	_, token := meshWithToken(t, ts, "traced")
	n := ts.newNode()
	n.enroll(t, token, "web")
	bad := ts.newNode()
	if _, err := bad.c.Enroll(context.Background(), controlclient.NewEnrollRequest("x0t_join_bogus", "b", bad.key, nil)); err == nil {
		t.Fatal("enrolled with a bogus token")
	}
	// A request that continues a caller's trace.
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	key := adminKey(t, ts)
	req := must[*http.Request](t)(http.NewRequest(http.MethodGet, ts.url+"/api/v1/meshes/traced", nil))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	resp := must[*http.Response](t)(ts.rawClient().Do(req))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET mesh: %s", resp.Status)
	}
	ts.stop() // flushes the batched spans

	if v, _ := attr(col.resource, "service.name"); v != control.ServiceName {
		t.Errorf("service.name = %q", v)
	}

	// The enrollment: request span → enroll → steps.
	var reqSpan *tracepb.Span
	for _, s := range col.named("POST " + api.PathEnroll) {
		if code, _ := attr(s.GetAttributes(), "http.response.status_code"); code == "200" {
			reqSpan = s
		}
	}
	if reqSpan == nil {
		t.Fatalf("no 200 span named %q; spans: %v", "POST "+api.PathEnroll, spanNames(col))
	}
	if reqSpan.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("request span kind %v", reqSpan.GetKind())
	}
	if route, _ := attr(reqSpan.GetAttributes(), "http.route"); route != api.PathEnroll {
		t.Errorf("http.route = %q", route)
	}
	var enroll *tracepb.Span
	for _, s := range col.named("enroll") {
		if bytes.Equal(s.GetParentSpanId(), reqSpan.GetSpanId()) {
			enroll = s
		}
	}
	if enroll == nil {
		t.Fatal("no enroll span under the enrollment request's span")
	}
	for k, want := range map[string]string{"x0t.enroll.result": "approved", "x0t.node.id": n.id, "x0t.mesh.name": "traced"} {
		if v, _ := attr(enroll.GetAttributes(), k); v != want {
			t.Errorf("enroll span %s = %q, want %q", k, v, want)
		}
	}
	for _, step := range []string{"enroll.verify_proof", "enroll.token_check", "enroll.allocate", "enroll.cert_issue", "enroll.store_append"} {
		found := false
		for _, s := range col.named(step) {
			if bytes.Equal(s.GetParentSpanId(), enroll.GetSpanId()) && bytes.Equal(s.GetTraceId(), enroll.GetTraceId()) {
				found = true
				if s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
					t.Errorf("%s failed: %v", step, s.GetStatus())
				}
			}
		}
		if !found {
			t.Errorf("no %s span under the enroll span", step)
		}
	}

	// The refused enrollment: its token check failed, the request said 401.
	var refused *tracepb.Span
	for _, s := range col.named("enroll") {
		if r, _ := attr(s.GetAttributes(), "x0t.enroll.result"); r == "rejected" {
			refused = s
		}
	}
	if refused == nil {
		t.Fatal("no enroll span with result rejected")
	}
	failedCheck := false
	for _, s := range col.named("enroll.token_check") {
		if bytes.Equal(s.GetParentSpanId(), refused.GetSpanId()) && s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			failedCheck = true
		}
	}
	if !failedCheck {
		t.Error("the refused enrollment's token check is not marked failed")
	}
	got401 := false
	for _, s := range col.named("POST " + api.PathEnroll) {
		if code, _ := attr(s.GetAttributes(), "http.response.status_code"); code == "401" {
			got401 = true
		}
	}
	if !got401 {
		t.Error("no request span with status 401 for the refused enrollment")
	}

	// The admin request joined the caller's trace.
	spans := col.named("GET /api/v1/meshes/{mesh}")
	if len(spans) != 1 {
		t.Fatalf("%d spans for GET /api/v1/meshes/{mesh}; spans: %v", len(spans), spanNames(col))
	}
	if got := hex.EncodeToString(spans[0].GetTraceId()); got != traceID {
		t.Errorf("trace ID %s, want the caller's %s", got, traceID)
	}
	if got := hex.EncodeToString(spans[0].GetParentSpanId()); got != parentID {
		t.Errorf("parent span %s, want the caller's %s", got, parentID)
	}
	if len(col.named("POST /api/v1/meshes")) == 0 || len(col.named("POST /api/v1/meshes/{mesh}/tokens")) == 0 {
		t.Errorf("admin requests not traced; spans: %v", spanNames(col))
	}

	// No secret in any attribute or status message.
	col.mu.Lock()
	defer col.mu.Unlock()
	secrets := []string{token, key, "x0t_join_bogus"}
	check := func(where, s string) {
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("%s holds a secret: %q", where, s)
			}
		}
	}
	for _, s := range col.spans {
		for _, kv := range s.GetAttributes() {
			check(s.GetName()+" "+kv.GetKey(), kv.GetValue().String())
		}
		check(s.GetName()+" status", s.GetStatus().GetMessage())
	}
}

// TestTracingOffByDefault: without an OTLP endpoint the provider is the
// no-op one, and a misconfiguration this build can not honour is an error.
func TestTracingOffByDefault(t *testing.T) {
	otelEnv(t, "")
	if on, err := control.TracingEnabled(); on || err != nil {
		t.Fatalf("enabled=%v err=%v without an endpoint", on, err)
	}
	tp, shutdown, err := control.NewTracerProvider(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, span := tp.Tracer("t").Start(context.Background(), "s"); span.IsRecording() {
		t.Error("the default provider records spans")
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	if _, err := control.TracingEnabled(); err == nil {
		t.Error("the gRPC protocol accepted, but only OTLP/HTTP is built")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
	t.Setenv("OTEL_SDK_DISABLED", "true")
	if on, _ := control.TracingEnabled(); on {
		t.Error("OTEL_SDK_DISABLED=true ignored")
	}
}

func spanNames(c *collector) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.spans {
		out = append(out, s.GetName())
	}
	return out
}

func adminKey(t *testing.T, ts *testServer) string {
	t.Helper()
	if ts.srv.AdminKey != "" {
		return ts.srv.AdminKey
	}
	b := must[[]byte](t)(os.ReadFile(ts.dir + "/" + control.FileAdminKey))
	return strings.TrimSpace(string(b))
}
