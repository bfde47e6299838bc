package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/x0tta6bl4/x0t/control"
	"github.com/x0tta6bl4/x0t/lab"
	"github.com/x0tta6bl4/x0t/node"
)

// The Grafana dashboard and the Prometheus alert rules are checked against
// the series the real registries expose: every metric an expression selects
// must exist (a histogram's _bucket, _sum and _count series included), every
// label it matches on or groups by must be one of that metric's labels, rate()
// and friends must be given counters and histogram_quantile() _bucket series.
// Renaming a metric or a label in node/ or control/ fails this test until the
// dashboard and the rules follow.

const (
	dashboardFile = "grafana/x0t.json"
	alertsFile    = "prometheus/x0t-alerts.yml"
)

// targetLabels are attached by Prometheus to every scraped series.
var targetLabels = map[string]bool{"instance": true, "job": true}

// seriesInfo describes one series name a scrape can contain.
type seriesInfo struct {
	family     string
	labels     map[string]bool
	cumulative bool // a counter, or a histogram's or summary's _bucket/_sum/_count
	bucket     bool // a histogram's _bucket series
}

// metricCatalog maps series names to what they are.
type metricCatalog map[string]*seriesInfo

func (c metricCatalog) add(name, family string, labels map[string]bool, cumulative, bucket bool) {
	c[name] = &seriesInfo{family: family, labels: labels, cumulative: cumulative, bucket: bucket}
}

// addFamily adds the series of a gathered family: labels are those its
// samples carry; a histogram becomes _bucket (with le), _sum and _count.
func (c metricCatalog) addFamily(mf *dto.MetricFamily) {
	name := mf.GetName()
	labels := map[string]bool{}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = true
		}
	}
	with := func(extra string) map[string]bool {
		l := maps.Clone(labels)
		l[extra] = true
		return l
	}
	switch mf.GetType() {
	case dto.MetricType_COUNTER:
		c.add(name, name, labels, true, false)
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		c.add(name+"_bucket", name, with("le"), true, true)
		c.add(name+"_sum", name, labels, true, false)
		c.add(name+"_count", name, labels, true, false)
	case dto.MetricType_SUMMARY:
		c.add(name, name, with("quantile"), false, false)
		c.add(name+"_sum", name, labels, true, false)
		c.add(name+"_count", name, labels, true, false)
	default: // gauge, untyped
		c.add(name, name, labels, false, false)
	}
}

var (
	catalogOnce  sync.Once
	catalogValue metricCatalog
	catalogFams  []string // the x0t_ families: node.MetricNames() and control.MetricNames()
	catalogErr   error
)

// realCatalog gathers the registries of two running lab nodes (after a ping,
// so that per-peer and per-link families exist) and of a control plane
// (after an admin request and audit events), waiting until every family
// node.MetricNames() and control.MetricNames() list has been exposed, and
// adds Prometheus' own up.
func realCatalog(t *testing.T) metricCatalog {
	t.Helper()
	catalogOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c := metricCatalog{}
		nodeFams, err := gatherNode(ctx)
		if err != nil {
			catalogErr = err
			return
		}
		controlFams, err := gatherControl(ctx)
		if err != nil {
			catalogErr = err
			return
		}
		for _, fams := range []struct {
			who   string
			names []string
			got   []*dto.MetricFamily
		}{{"node", node.MetricNames(), nodeFams}, {"control", control.MetricNames(), controlFams}} {
			for _, mf := range fams.got {
				if strings.HasPrefix(mf.GetName(), "x0t_") && !slices.Contains(fams.names, mf.GetName()) {
					catalogErr = fmt.Errorf("the %s registry exposes %s, which %s.MetricNames() does not list", fams.who, mf.GetName(), fams.who)
					return
				}
				c.addFamily(mf)
			}
			catalogFams = append(catalogFams, fams.names...)
		}
		c.add("up", "up", map[string]bool{}, false, false) // Prometheus' own, per target
		catalogValue = c
	})
	if catalogErr != nil {
		t.Fatal(catalogErr)
	}
	return catalogValue
}

// gatherUntil gathers reg until every name in want is among its families.
func gatherUntil(ctx context.Context, reg prometheus.Gatherer, want []string, poke func()) ([]*dto.MetricFamily, error) {
	for {
		fams, err := reg.Gather()
		if err != nil {
			return nil, err
		}
		var missing []string
		for _, name := range want {
			if !slices.ContainsFunc(fams, func(mf *dto.MetricFamily) bool { return mf.GetName() == name }) {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			return fams, nil
		}
		if poke != nil {
			poke()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("families listed by MetricNames() never exposed: %v", missing)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func gatherNode(ctx context.Context) ([]*dto.MetricFamily, error) {
	m, err := lab.New("monitoring", nil)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	a, err := m.Add("a", 1)
	if err != nil {
		return nil, err
	}
	b, err := m.Add("b", 2)
	if err != nil {
		return nil, err
	}
	if err := a.Start(b); err != nil {
		return nil, err
	}
	if err := b.Start(a); err != nil {
		return nil, err
	}
	seq := 0
	ping := func() { // traffic brings up the session, link monitoring follows
		seq++
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		a.Ping(pctx, b, false, seq)
	}
	ping()
	fams, err := gatherUntil(ctx, node.NewRegistry(a.Node), node.MetricNames(), ping)
	if err != nil {
		return nil, fmt.Errorf("node registry: %w", err)
	}
	return fams, nil
}

func gatherControl(ctx context.Context) ([]*dto.MetricFamily, error) {
	dir, err := os.MkdirTemp("", "x0t-monitoring-test-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cp, err := lab.StartControlPlane(ctx, dir, nil)
	if err != nil {
		return nil, err
	}
	defer cp.Close()
	// API requests (a histogram series) and audit events (mesh and token).
	if _, err := cp.NewMesh(ctx, "monitoring"); err != nil {
		return nil, err
	}
	fams, err := gatherUntil(ctx, cp.Server.Registry(), control.MetricNames(), nil)
	if err != nil {
		return nil, fmt.Errorf("control registry: %w", err)
	}
	return fams, nil
}

// ---------------------------------------------------------------- PromQL

// selectorRef is a vector selector found in an expression.
type selectorRef struct {
	name     string
	matchers []string // label names matched on
	funcs    []string // enclosing functions and aggregations, outermost first ("" for plain parentheses)
}

// exprRefs is what an expression references.
type exprRefs struct {
	selectors []selectorRef
	grouping  []string // labels of by, without, on, ignoring, group_left, group_right
}

var (
	promqlAggregations = map[string]bool{"sum": true, "avg": true, "min": true, "max": true, "count": true, "group": true,
		"stddev": true, "stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true,
		"limitk": true, "limit_ratio": true}
	promqlGrouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
		"inf": true, "nan": true, "start": true, "end": true}
	// counterFuncs need counters (or a histogram's cumulative series).
	counterFuncs = map[string]bool{"rate": true, "irate": true, "increase": true, "resets": true}
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
func isDigit(c byte) bool     { return '0' <= c && c <= '9' }
func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) }

func skipSpace(s string, i int) int {
	for i < len(s) && strings.IndexByte(" \t\r\n", s[i]) >= 0 {
		i++
	}
	return i
}

// scanString reads the quoted string at s[i] and returns the index after it
// and its contents.
func scanString(s string, i int) (int, string, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			v := s[i+1 : j]
			if q == '"' {
				if u, err := strconv.Unquote(s[i : j+1]); err == nil {
					v = u
				}
			}
			return j + 1, v, nil
		}
	}
	return 0, "", fmt.Errorf("unterminated string at %d", i)
}

// scanMatchers reads the label matchers at s[i] == '{' and returns the index
// after them, the label names and the metric name if one is given inside
// ({"name"} or {__name__="name"}).
func scanMatchers(s string, i int) (end int, labels []string, name string, err error) {
	i++
	for {
		i = skipSpace(s, i)
		for i < len(s) && s[i] == ',' {
			i = skipSpace(s, i+1)
		}
		if i >= len(s) {
			return 0, nil, "", errors.New("unterminated label matchers")
		}
		if s[i] == '}' {
			return i + 1, labels, name, nil
		}
		var label string
		quoted := s[i] == '"' || s[i] == '\''
		switch {
		case quoted:
			if i, label, err = scanString(s, i); err != nil {
				return 0, nil, "", err
			}
		case isIdentStart(s[i]):
			j := i
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			label, i = s[i:j], j
		default:
			return 0, nil, "", fmt.Errorf("unexpected %q in label matchers", s[i])
		}
		i = skipSpace(s, i)
		if quoted && i < len(s) && (s[i] == ',' || s[i] == '}') {
			name = label // {"metric_name", ...}
			continue
		}
		op := ""
		for _, o := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(s[i:], o) {
				op = o
				break
			}
		}
		if op == "" {
			return 0, nil, "", fmt.Errorf("label %q without a matching operator", label)
		}
		i = skipSpace(s, i+len(op))
		if i >= len(s) || (s[i] != '"' && s[i] != '\'' && s[i] != '`') {
			return 0, nil, "", fmt.Errorf("label %q: the value must be a string", label)
		}
		var value string
		if i, value, err = scanString(s, i); err != nil {
			return 0, nil, "", err
		}
		if label == "__name__" {
			if op != "=" {
				return 0, nil, "", fmt.Errorf("__name__%s: only an exact metric name can be checked", op)
			}
			name = value
			continue
		}
		labels = append(labels, label)
	}
}

// scanLabelList reads the label list at s[i] == '(' of a by/without/on/...
// clause.
func scanLabelList(s string, i int) (int, []string, error) {
	end := strings.IndexByte(s[i:], ')')
	if end < 0 {
		return 0, nil, errors.New("unterminated label list")
	}
	var labels []string
	for _, l := range strings.Split(s[i+1:i+end], ",") {
		l = strings.Trim(strings.TrimSpace(l), `"'`)
		if l == "" {
			continue
		}
		if !isIdentStart(l[0]) || strings.ContainsFunc(l, func(r rune) bool { return r > 127 || !isIdentChar(byte(r)) || r == ':' }) {
			return 0, nil, fmt.Errorf("%q is not a label name", l)
		}
		labels = append(labels, l)
	}
	return i + end + 1, labels, nil
}

// parsePromQL finds the metric names and labels an expression references
// with a small tokenizer: identifiers that are not functions (followed by
// "("), aggregations, keywords, label names of matchers and clauses, nor in
// strings, durations and ranges ([...]), numbers or Grafana variables ($x,
// ${x}) are metric names.
func parsePromQL(s string) (exprRefs, error) {
	var r exprRefs
	var stack []string
	pending := "" // the function or aggregation whose "(" comes next
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case strings.IndexByte(" \t\r\n", c) >= 0:
			i++
		case c == '#': // comment
			if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
				i += j
			} else {
				i = len(s)
			}
		case c == '"' || c == '\'' || c == '`':
			j, _, err := scanString(s, i)
			if err != nil {
				return r, err
			}
			i = j
		case c == '[': // range or subquery: durations and Grafana's $__rate_interval
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return r, errors.New("unterminated [")
			}
			i += j + 1
		case c == '$': // a Grafana variable
			i++
			if i < len(s) && s[i] == '{' {
				j := strings.IndexByte(s[i:], '}')
				if j < 0 {
					return r, errors.New("unterminated ${")
				}
				i += j + 1
			}
			for i < len(s) && isIdentChar(s[i]) {
				i++
			}
		case c == '{':
			j, labels, name, err := scanMatchers(s, i)
			if err != nil {
				return r, err
			}
			if name == "" {
				return r, fmt.Errorf("selector %s names no metric", s[i:j])
			}
			r.selectors = append(r.selectors, selectorRef{name: name, matchers: labels, funcs: slices.Clone(stack)})
			i = j
		case c == '(':
			stack = append(stack, pending)
			pending = ""
			i++
		case c == ')':
			if len(stack) == 0 {
				return r, fmt.Errorf("unbalanced ) at %d", i)
			}
			stack = stack[:len(stack)-1]
			i++
		case isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1]): // number or duration
			j := i + 1
			for j < len(s) && (isIdentChar(s[j]) || s[j] == '.' ||
				(s[j] == '+' || s[j] == '-') && (s[j-1] == 'e' || s[j-1] == 'E') && !strings.HasPrefix(s[i:], "0x")) {
				j++
			}
			i = j
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			word, lower := s[i:j], strings.ToLower(s[i:j])
			i = j
			k := skipSpace(s, i)
			next := byte(0)
			if k < len(s) {
				next = s[k]
			}
			switch {
			case promqlGrouping[lower]:
				if next != '(' {
					if lower == "group_left" || lower == "group_right" {
						continue // the label list is optional
					}
					return r, fmt.Errorf("%s without a label list", word)
				}
				end, labels, err := scanLabelList(s, k)
				if err != nil {
					return r, err
				}
				r.grouping = append(r.grouping, labels...)
				i = end
			case next == '(':
				pending = lower // a function or an aggregation
			case promqlAggregations[lower]:
				pending = lower // sum by (x) (...)
			case promqlKeywords[lower]:
			default:
				sel := selectorRef{name: word, funcs: slices.Clone(stack)}
				if next == '{' {
					end, labels, name, err := scanMatchers(s, k)
					if err != nil {
						return r, err
					}
					if name != "" {
						return r, fmt.Errorf("metric %s named twice", word)
					}
					sel.matchers, i = labels, end
				}
				r.selectors = append(r.selectors, sel)
			}
		default: // operators, commas, @
			i++
		}
	}
	if len(stack) != 0 {
		return r, errors.New("unbalanced (")
	}
	return r, nil
}

// analyze checks expr against the catalog. It returns the labels the
// expression's metrics carry (target labels included) and the problems.
func (c metricCatalog) analyze(expr string) (labels map[string]bool, problems []string) {
	r, err := parsePromQL(expr)
	if err != nil {
		return nil, []string{err.Error()}
	}
	if len(r.selectors) == 0 {
		return nil, []string{"references no metric"}
	}
	labels = maps.Clone(targetLabels)
	for _, sel := range r.selectors {
		info := c[sel.name]
		if info == nil {
			problems = append(problems, fmt.Sprintf("unknown metric %s", sel.name))
			continue
		}
		for l := range info.labels {
			labels[l] = true
		}
		for _, l := range sel.matchers {
			if !info.labels[l] && !targetLabels[l] {
				problems = append(problems, fmt.Sprintf("%s has no label %q", sel.name, l))
			}
		}
		fn := ""
		for _, f := range sel.funcs {
			if f != "" {
				fn = f
			}
		}
		if counterFuncs[fn] && !info.cumulative {
			problems = append(problems, fmt.Sprintf("%s(%s): not a counter", fn, sel.name))
		}
		if slices.Contains(sel.funcs, "histogram_quantile") && !info.bucket {
			problems = append(problems, fmt.Sprintf("histogram_quantile over %s, not a histogram's _bucket series", sel.name))
		}
	}
	if len(problems) != 0 {
		return labels, problems
	}
	for _, l := range r.grouping {
		if !labels[l] {
			problems = append(problems, fmt.Sprintf("label %q (by/without/on/ignoring/group_*) is on none of the metrics", l))
		}
	}
	return labels, problems
}

// metricsOf returns the metric names expr selects.
func metricsOf(t *testing.T, expr string) []string {
	t.Helper()
	r, err := parsePromQL(expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	var out []string
	for _, s := range r.selectors {
		out = append(out, s.name)
	}
	return out
}

// TestMonitoringChecker tests the expression checker on a made-up catalog.
func TestMonitoringChecker(t *testing.T) {
	c := metricCatalog{}
	c.add("drops_total", "drops_total", map[string]bool{"reason": true}, true, false)
	c.add("temp_celsius", "temp_celsius", map[string]bool{"room": true}, false, false)
	c.add("lat_seconds_bucket", "lat_seconds", map[string]bool{"route": true, "le": true}, true, true)
	c.add("lat_seconds_count", "lat_seconds", map[string]bool{"route": true}, true, false)
	c.add("info", "info", map[string]bool{"mesh": true}, false, false)

	for _, tc := range []struct {
		expr    string
		metrics []string
		problem string // "" for none
	}{
		{`sum by (reason) (rate(drops_total{reason=~"auth|replay", instance=~"$instance"}[$__rate_interval] offset 5m))`,
			[]string{"drops_total"}, ""},
		{`SUM BY (reason) (increase(drops_total[1h:5m])) > bool 1e-3`, []string{"drops_total"}, ""},
		{`histogram_quantile(0.99, sum by (le, route) (rate(lat_seconds_bucket{route!="/api/v1/x"}[5m])))`,
			[]string{"lat_seconds_bucket"}, ""},
		{`temp_celsius * on (instance) group_left (mesh) info{mesh=~"${mesh}"} and temp_celsius offset -1d > .5`,
			[]string{"temp_celsius", "info", "temp_celsius"}, ""},
		{`label_replace(temp_celsius, "by", "$1", "room", "(sum|rate)") # sum(rate(nothing_total[5m]))`,
			[]string{"temp_celsius"}, ""},
		{`{"temp_celsius", room="a"} + {__name__="temp_celsius"}`, []string{"temp_celsius", "temp_celsius"}, ""},

		{`rate(drops_renamed_total[5m])`, []string{"drops_renamed_total"}, "unknown metric drops_renamed_total"},
		{`sum(rate(drops_total{peer="x"}[5m]))`, []string{"drops_total"}, `drops_total has no label "peer"`},
		{`sum by (peer) (rate(drops_total[5m]))`, []string{"drops_total"}, `label "peer"`},
		{`temp_celsius * ignoring (reason) info`, []string{"temp_celsius", "info"}, `label "reason"`},
		{`rate(temp_celsius[5m])`, []string{"temp_celsius"}, "rate(temp_celsius): not a counter"},
		{`histogram_quantile(0.5, rate(lat_seconds_count[5m]))`, []string{"lat_seconds_count"}, "not a histogram's _bucket series"},
		{`vector(1)`, nil, "references no metric"},
		{`sum(rate(drops_total[5m])`, nil, "unbalanced"},
		{`drops_total{reason="x}`, nil, "unterminated"},
		{`{reason="auth"}`, nil, "names no metric"},
	} {
		_, problems := c.analyze(tc.expr)
		got := strings.Join(problems, "; ")
		switch {
		case tc.problem == "" && got != "":
			t.Errorf("%s: unexpected problems: %s", tc.expr, got)
		case tc.problem != "" && !strings.Contains(got, tc.problem):
			t.Errorf("%s: problems %q, want one with %q", tc.expr, got, tc.problem)
		}
		if r, err := parsePromQL(tc.expr); err == nil {
			var names []string
			for _, s := range r.selectors {
				names = append(names, s.name)
			}
			if !slices.Equal(names, tc.metrics) {
				t.Errorf("%s: metrics %v, want %v", tc.expr, names, tc.metrics)
			}
		}
	}
}

// ---------------------------------------------------------------- Grafana

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	ID         int                `json:"id"`
	Type       string             `json:"type"`
	Title      string             `json:"title"`
	Datasource *grafanaDatasource `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Collapsed bool `json:"collapsed"`
	Targets   []struct {
		RefID      string             `json:"refId"`
		Expr       string             `json:"expr"`
		Datasource *grafanaDatasource `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaDashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string             `json:"name"`
			Type       string             `json:"type"`
			Query      any                `json:"query"`
			Definition string             `json:"definition"`
			Datasource *grafanaDatasource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

func readDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dec.More() {
		t.Fatalf("%s: data after the dashboard", dashboardFile)
	}
	return d
}

// flatPanels lists every panel, the panels of collapsed rows included.
func flatPanels(ps []grafanaPanel) []grafanaPanel {
	var out []grafanaPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatPanels(p.Panels)...)
	}
	return out
}

const datasourceVar = "${datasource}"

var (
	labelValuesQuery = regexp.MustCompile(`^label_values\(\s*(?:(.*?)\s*,\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
	queryResultQuery = regexp.MustCompile(`^query_result\((.*)\)$`)
	grafanaVarRef    = regexp.MustCompile(`\$(?:\{([a-zA-Z0-9_]+)(?::[a-z]+)?\}|([a-zA-Z0-9_]+))`)
)

// grafanaBuiltins are Grafana's global variables.
var grafanaBuiltins = map[string]bool{"__rate_interval": true, "__interval": true, "__interval_ms": true, "__range": true,
	"__range_s": true, "__range_ms": true, "__dashboard": true, "__from": true, "__to": true}

// checkVariableQuery checks a Prometheus query variable: label_values(expr,
// label), label_values(label) or query_result(expr).
func checkVariableQuery(c metricCatalog, q string) []string {
	q = strings.TrimSpace(q)
	if m := labelValuesQuery.FindStringSubmatch(q); m != nil {
		label := m[2]
		if m[1] == "" {
			for _, s := range c {
				if s.labels[label] {
					return nil
				}
			}
			if targetLabels[label] {
				return nil
			}
			return []string{fmt.Sprintf("no metric has label %q", label)}
		}
		labels, problems := c.analyze(m[1])
		if len(problems) == 0 && !labels[label] {
			problems = append(problems, fmt.Sprintf("label %q is not on %s", label, m[1]))
		}
		return problems
	}
	if m := queryResultQuery.FindStringSubmatch(q); m != nil {
		_, problems := c.analyze(m[1])
		return problems
	}
	return []string{"not label_values(...) or query_result(...): can not be checked"}
}

// dashboardExprs returns every PromQL expression of the dashboard: panel
// targets and the expressions of query variables.
func dashboardExprs(d grafanaDashboard) []string {
	var exprs []string
	for _, p := range flatPanels(d.Panels) {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		q := strings.TrimSpace(variableQuery(v.Query))
		if m := labelValuesQuery.FindStringSubmatch(q); m != nil && m[1] != "" {
			exprs = append(exprs, m[1])
		} else if m := queryResultQuery.FindStringSubmatch(q); m != nil {
			exprs = append(exprs, m[1])
		}
	}
	return exprs
}

// variableQuery returns the query of a query variable: a string, or an
// object with a query field (Grafana 10+).
func variableQuery(q any) string {
	switch q := q.(type) {
	case string:
		return q
	case map[string]any:
		s, _ := q["query"].(string)
		return s
	}
	return ""
}

func TestMonitoringDashboard(t *testing.T) {
	d := readDashboard(t)
	c := realCatalog(t)

	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed", d.UID, d.Title)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: want 36 or later (datasource references by uid)", d.SchemaVersion)
	}

	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		if vars[v.Name] {
			t.Errorf("variable %s defined twice", v.Name)
		}
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			if v.Name != "datasource" || v.Query != "prometheus" {
				t.Errorf("datasource variable %s of %v: want ${datasource}, of prometheus", v.Name, v.Query)
			}
		case "query":
			if v.Datasource == nil || v.Datasource.UID != datasourceVar {
				t.Errorf("variable %s: datasource %v, want %s", v.Name, v.Datasource, datasourceVar)
			}
			q := variableQuery(v.Query)
			if q == "" {
				t.Errorf("variable %s has no query", v.Name)
			}
			if v.Definition != "" && v.Definition != q {
				t.Errorf("variable %s: definition %q differs from its query %q", v.Name, v.Definition, q)
			}
			for _, p := range checkVariableQuery(c, q) {
				t.Errorf("variable %s: %s: %s", v.Name, q, p)
			}
		}
	}
	if !vars["datasource"] {
		t.Error("no datasource variable: panels must use ${datasource}")
	}

	ids := map[int]string{}
	used := map[string]bool{}
	panels := flatPanels(d.Panels)
	if len(panels) == 0 {
		t.Fatal("no panels")
	}
	for _, p := range panels {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID <= 0 {
			t.Errorf("%s: no id", name)
		} else if other, dup := ids[p.ID]; dup {
			t.Errorf("%s: id already used by %q", name, other)
		}
		ids[p.ID] = p.Title
		if p.Title == "" || p.Type == "" {
			t.Errorf("%s: title and type are needed", name)
		}
		if p.GridPos == nil || p.GridPos.W < 1 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
			t.Errorf("%s: gridPos %+v", name, p.GridPos)
		}
		if p.Type == "row" {
			if len(p.Targets) != 0 {
				t.Errorf("%s: a row with targets", name)
			}
			if !p.Collapsed && len(p.Panels) != 0 {
				t.Errorf("%s: an expanded row holds panels (only collapsed rows do)", name)
			}
			continue
		}
		if len(p.Panels) != 0 {
			t.Errorf("%s: panels nested in a %s", name, p.Type)
		}
		if p.Datasource == nil || p.Datasource.UID != datasourceVar || p.Datasource.Type != "prometheus" {
			t.Errorf("%s: datasource %+v, want prometheus %s", name, p.Datasource, datasourceVar)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no targets", name)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: refId %q missing or repeated", name, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && tg.Datasource.UID != datasourceVar {
				t.Errorf("%s, target %s: datasource %+v", name, tg.RefID, tg.Datasource)
			}
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s, target %s: no expr", name, tg.RefID)
				continue
			}
			for _, m := range grafanaVarRef.FindAllStringSubmatch(tg.Expr, -1) {
				if v := m[1] + m[2]; !vars[v] && !grafanaBuiltins[v] {
					t.Errorf("%s, target %s: undefined variable $%s", name, tg.RefID, v)
				}
			}
			_, problems := c.analyze(tg.Expr)
			for _, pr := range problems {
				t.Errorf("%s, target %s: %s\n\t%s", name, tg.RefID, pr, tg.Expr)
			}
			if len(problems) == 0 {
				for _, m := range metricsOf(t, tg.Expr) {
					used[c[m].family] = true
				}
			}
		}
	}
	var unused []string
	for _, f := range catalogFams {
		if !used[f] {
			unused = append(unused, f)
		}
	}
	if len(unused) != 0 {
		t.Logf("families no panel shows: %v", unused)
	}
}

// ---------------------------------------------------------------- Prometheus

type alertRuleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert         string            `yaml:"alert"`
			Record        string            `yaml:"record"`
			Expr          string            `yaml:"expr"`
			For           string            `yaml:"for"`
			KeepFiringFor string            `yaml:"keep_firing_for"`
			Labels        map[string]string `yaml:"labels"`
			Annotations   map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readAlerts(t *testing.T) alertRuleFile {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f alertRuleFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt field is an error, as in promtool
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return f
}

// promTemplateFuncs are the functions Prometheus offers alert templates (the
// bodies do not matter: the templates are only parsed).
var promTemplateFuncs = func() template.FuncMap {
	fm := template.FuncMap{}
	for _, name := range []string{"query", "first", "label", "value", "strvalue", "args", "reReplaceAll", "safeHtml",
		"match", "title", "toUpper", "toLower", "graphLink", "tableLink", "sortByLabel", "humanize", "humanize1024",
		"humanizeDuration", "humanizePercentage", "humanizeTimestamp", "toTime", "toDuration", "pathPrefix",
		"externalURL", "parseDuration", "stripPort", "stripDomain", "now", "urlQueryEscape"} {
		fm[name] = func(...any) any { return nil }
	}
	return fm
}()

// promTemplateDefs is what Prometheus prepends to every alert template.
const promTemplateDefs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"

var labelRef = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

func TestMonitoringAlerts(t *testing.T) {
	f := readAlerts(t)
	c := realCatalog(t)
	if len(f.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	groups, alerts := map[string]bool{}, map[string]bool{}
	alertName := regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`)
	for _, g := range f.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group name %q missing or repeated", g.Name)
		}
		groups[g.Name] = true
		if g.Interval != "" {
			if _, err := model.ParseDuration(g.Interval); err != nil {
				t.Errorf("group %s: interval: %v", g.Name, err)
			}
		}
		if len(g.Rules) == 0 {
			t.Errorf("group %s has no rules", g.Name)
		}
		for i, r := range g.Rules {
			name := fmt.Sprintf("group %s, rule %d %s", g.Name, i, r.Alert)
			if r.Record != "" {
				t.Errorf("%s: recording rule %s: the checker does not know recorded series", name, r.Record)
				continue
			}
			if !alertName.MatchString(r.Alert) || alerts[r.Alert] {
				t.Errorf("%s: alert name missing, not CamelCase or repeated", name)
			}
			alerts[r.Alert] = true
			if r.For == "" {
				t.Errorf("%s: no for (write for: 0m to fire at once)", name)
			} else if _, err := model.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for: %v", name, err)
			}
			if r.KeepFiringFor != "" {
				if _, err := model.ParseDuration(r.KeepFiringFor); err != nil {
					t.Errorf("%s: keep_firing_for: %v", name, err)
				}
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: labels.severity %q: want critical, warning or info", name, r.Labels["severity"])
			}
			labels, problems := c.analyze(r.Expr)
			for _, p := range problems {
				t.Errorf("%s: %s\n\t%s", name, p, r.Expr)
			}
			for _, key := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[key]) == "" {
					t.Errorf("%s: no annotations.%s", name, key)
				}
			}
			for key, text := range r.Annotations {
				if _, err := template.New(key).Funcs(promTemplateFuncs).Parse(promTemplateDefs + text); err != nil {
					t.Errorf("%s: annotations.%s: %v", name, key, err)
				}
				for _, m := range labelRef.FindAllStringSubmatch(text, -1) {
					if labels != nil && !labels[m[1]] {
						t.Errorf("%s: annotations.%s uses $labels.%s, a label none of its metrics has", name, key, m[1])
					}
				}
			}
		}
	}
}

// TestMonitoringDetectsRenames renames, one at a time, every metric each
// dashboard and alert expression selects, and expects the checker to report
// it: a metric renamed in node/ or control/ can not go unnoticed.
func TestMonitoringDetectsRenames(t *testing.T) {
	c := realCatalog(t)
	exprs := dashboardExprs(readDashboard(t))
	for _, g := range readAlerts(t).Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	n := 0
	for _, expr := range exprs {
		for _, m := range metricsOf(t, expr) {
			renamed := regexp.MustCompile(`\b`+regexp.QuoteMeta(m)+`\b`).ReplaceAllString(expr, m+"_renamed")
			_, problems := c.analyze(renamed)
			if !slices.Contains(problems, "unknown metric "+m+"_renamed") {
				t.Errorf("renaming %s went unnoticed in %s: %v", m, renamed, problems)
			}
			n++
		}
	}
	if n < 50 {
		t.Errorf("only %d metric references found in the dashboard and the alert rules", n)
	}
}
