package check

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/node"
	"github.com/ringkv/ringkv/ring/gossip"
)

const (
	dashboardFile = "deploy/grafana/ringkv.json"
	alertsFile    = "deploy/prometheus/alerts.yaml"
	operationsDoc = "docs/OPERATIONS.md"
)

// scrapeSeries are the series Prometheus itself adds for every target;
// no node exports them.
var scrapeSeries = map[string]bool{"up": true}

// recordingRegistry is a Prometheus registry that also remembers the name
// of every metric its collectors describe. Gather reports a labelled
// metric (hints pending per target, say) only once it has a series, and a
// single test node never gets some labels; the descriptions still name
// it.
type recordingRegistry struct {
	*prometheus.Registry
	mu        sync.Mutex
	described map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recordingRegistry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err //nolint:wrapcheck // the registry's error, as the caller expects it
	}
	descs := make(chan *prometheus.Desc)
	go func() {
		c.Describe(descs)
		close(descs)
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range descs {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.described[m[1]] = true
		}
	}
	return nil
}

func (r *recordingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// exported is what a node exports: the families it gathered, with their
// types, and every name its collectors describe.
type exported struct {
	families  map[string]dto.MetricType
	described map[string]bool
}

// has reports whether a PromQL metric name is exported: a family, the
// _bucket, _sum and _count series of a histogram (_sum and _count of a
// summary), or a series Prometheus adds itself.
func (e exported) has(name string) bool {
	if _, ok := e.families[name]; ok || e.described[name] || scrapeSeries[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch e.families[base] {
		case dto.MetricType_HISTOGRAM:
			return true
		case dto.MetricType_SUMMARY:
			return suffix != "_bucket"
		}
	}
	return false
}

// nodeMetrics starts one node (it founds its own cluster) on loopback
// with the registry `ringkv serve` builds, the Go and process collectors
// included, makes a few requests at every level so that the histograms
// have samples, and returns what it exports.
func nodeMetrics(t *testing.T) exported {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.ID = "n1"
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.RPCAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.GossipProfile = gossip.Local
	cfg.Consensus.ReconcileInterval = 100 * time.Millisecond
	cfg.Ring.Partitions, cfg.Ring.ReplicationFactor = 8, 1
	reg := &recordingRegistry{Registry: prometheus.NewRegistry(), described: map[string]bool{}}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n, err := node.Open(cfg, node.Deps{Registerer: reg, Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, 30*time.Second, "node ready", func() error {
		if ready, _, _, waiting := n.Ready(); !ready {
			return fmt.Errorf("not ready; groups without a leader: %v", waiting)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := n.Coordinator()
	for _, level := range []coordinator.Level{coordinator.One, coordinator.Quorum, coordinator.All, coordinator.Linearizable} {
		key := []byte("deploy-check/" + level.String())
		if err := c.Set(ctx, key, []byte("v"), level); err != nil {
			t.Fatalf("set at %s: %v", level, err)
		}
		if _, found, err := c.Get(ctx, key, level); err != nil || !found {
			t.Fatalf("get at %s: found %v, %v", level, found, err)
		}
		if _, err := c.List(ctx, []byte("deploy-check/"), 10, level); err != nil {
			t.Fatalf("list at %s: %v", level, err)
		}
		if err := c.Delete(ctx, key, level); err != nil {
			t.Fatalf("delete at %s: %v", level, err)
		}
	}
	if _, err := c.CompareAndSet(ctx, []byte("deploy-check/cas"), nil, []byte("1")); err != nil {
		t.Fatalf("compare-and-set: %v", err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	e := exported{families: map[string]dto.MetricType{}, described: reg.described}
	for _, f := range fams {
		e.families[f.GetName()] = f.GetType()
	}
	for _, want := range []string{"ringkv_coordinator_request_duration_seconds", "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes"} {
		if _, ok := e.families[want]; !ok {
			t.Fatalf("the node does not export %s: is the registry the one serve builds?", want)
		}
	}
	return e
}

// grafanaVar matches a Grafana variable in a query: $name, ${name} or
// ${name:format}.
var grafanaVar = regexp.MustCompile(`\$\{?(\w+)(:\w+)?\}?`)

// promQL replaces Grafana's variables in a query by values PromQL
// accepts: durations for the interval variables, a regexp otherwise (they
// stand inside =~ matchers).
func promQL(q string) string {
	return grafanaVar.ReplaceAllStringFunc(q, func(m string) string {
		switch grafanaVar.FindStringSubmatch(m)[1] {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		default:
			return ".*"
		}
	})
}

// metricNames parses expr as PromQL and returns the metric names of its
// selectors.
func metricNames(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err //nolint:wrapcheck // the parser's message, with its position
	}
	var names []string
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && name == "" {
				if m.Type != labels.MatchEqual {
					errs = append(errs, fmt.Errorf("selector %s: name the metric literally", vs))
				}
				name = m.Value
			}
		}
		names = append(names, name)
		return nil
	})
	return names, errors.Join(errs...)
}

// unknownMetrics returns the metric names expr uses that e does not
// export, or the parse error.
func (e exported) unknownMetrics(expr string) ([]string, error) {
	names, err := metricNames(expr)
	var unknown []string
	for _, n := range names {
		if !e.has(n) && !slices.Contains(unknown, n) {
			unknown = append(unknown, n)
		}
	}
	return unknown, err
}

// dashboardQueries returns every PromQL query of the dashboard: each
// "expr" anywhere in it (panel targets, rows' nested panels) and the
// metric of each label_values() variable query.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	var d any
	if err := json.Unmarshal(readRepoFile(t, dashboardFile), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				walk(c, k)
			}
		case []any:
			for _, c := range v {
				walk(c, key)
			}
		case string:
			switch key {
			case "expr":
				out = append(out, v)
			case "definition":
				if m := labelValues.FindStringSubmatch(v); m != nil {
					out = append(out, m[1])
				}
			}
		}
	}
	walk(d, "")
	return out
}

// rules is a Prometheus rule file, as far as alerting rules go.
type rules struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func loadRules(t *testing.T) rules {
	t.Helper()
	var r rules
	if err := yaml.UnmarshalStrict(readRepoFile(t, alertsFile), &r); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	if len(r.Groups) == 0 {
		t.Fatalf("%s: no rule groups", alertsFile)
	}
	return r
}

// alertTemplate parses an annotation as Prometheus does: with $labels,
// $value and $externalLabels defined and its template functions.
func alertTemplate(text string) error {
	defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	funcs := template.FuncMap{}
	for _, f := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp", "title", "toUpper", "toLower", "first", "label", "value", "query", "reReplaceAll", "match", "printf"} {
		funcs[f] = func(...any) string { return "" }
	}
	_, err := template.New("annotation").Funcs(funcs).Parse(defs + text)
	return err //nolint:wrapcheck // the template's message
}

func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	e := nodeMetrics(t)
	var only []string
	for name := range e.described {
		if _, ok := e.families[name]; !ok {
			only = append(only, name)
		}
	}
	slices.Sort(only)
	t.Logf("exported: %d families with series, and these without a series on one test node: %v", len(e.families), only)

	check := func(t *testing.T, where, expr string) {
		t.Helper()
		unknown, err := e.unknownMetrics(promQL(expr))
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", where, expr, err)
		}
		if len(unknown) > 0 {
			t.Errorf("%s: %q uses %v, which a node does not export", where, expr, unknown)
		}
	}

	t.Run("dashboard", func(t *testing.T) {
		queries := dashboardQueries(t)
		if len(queries) < 20 {
			t.Fatalf("%s: %d queries, want the whole dashboard", dashboardFile, len(queries))
		}
		for _, q := range queries {
			check(t, dashboardFile, q)
		}
	})

	t.Run("alerts", func(t *testing.T) {
		seen := map[string]bool{}
		for _, g := range loadRules(t).Groups {
			for _, r := range g.Rules {
				where := fmt.Sprintf("%s: group %s, alert %s", alertsFile, g.Name, r.Alert)
				if r.Alert == "" || seen[r.Alert] {
					t.Errorf("%s: want a unique alert name", where)
				}
				seen[r.Alert] = true
				check(t, where, r.Expr)
				if r.For != "" {
					if _, err := model.ParseDuration(r.For); err != nil {
						t.Errorf("%s: for %q: %v", where, r.For, err)
					}
				}
				if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
					t.Errorf("%s: severity %q, want critical, warning or info", where, s)
				}
				for _, a := range []string{"summary", "description"} {
					if r.Annotations[a] == "" {
						t.Errorf("%s: no %s annotation", where, a)
					} else if err := alertTemplate(r.Annotations[a]); err != nil {
						t.Errorf("%s: %s: %v", where, a, err)
					}
				}
			}
		}
	})

	// The check is not vacuous: names a node does not export, and a
	// histogram suffix on a counter, are reported; the real names pass.
	t.Run("catches unknown names", func(t *testing.T) {
		for expr, want := range map[string][]string{
			`sum(rate(ringkv_coordinator_request_total[5m]))`:                                       {"ringkv_coordinator_request_total"},
			`rate(ringkv_coordinator_requests_total_bucket[5m])`:                                    {"ringkv_coordinator_requests_total_bucket"},
			`histogram_quantile(0.99, rate(ringkv_replica_sync_duration_bucket[5m]))`:               {"ringkv_replica_sync_duration_bucket"},
			`{__name__="ringkv_nope"} or up`:                                                        {"ringkv_nope"},
			`ringkv_coordinator_hints_pending > 0 and ringkv_coordinator_requests_total`:            nil,
			`histogram_quantile(0.5, rate(ringkv_coordinator_request_duration_seconds_bucket[5m]))`: nil,
		} {
			got, err := e.unknownMetrics(expr)
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("unknownMetrics(%q) = %v, %v; want %v", expr, got, err, want)
			}
		}
		if _, err := e.unknownMetrics(`sum by (op (rate(x[5m]))`); err == nil {
			t.Errorf("a malformed expression parsed")
		}
	})
}

// TestAlertsAreDocumented checks that docs/OPERATIONS.md has a section for
// every alert (what it means and what to do).
func TestAlertsAreDocumented(t *testing.T) {
	doc := string(readRepoFile(t, operationsDoc))
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if !regexp.MustCompile(`(?m)^#+ ` + regexp.QuoteMeta(r.Alert) + `\b`).MatchString(doc) {
				t.Errorf("%s has no section headed %s", operationsDoc, r.Alert)
			}
		}
	}
}
