package bench

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is one run of the harness: ringkv's results and, when a peer was
// compared, the peer's, with what the run was made on.
type Report struct {
	Command string    `json:"command"`
	Machine string    `json:"machine"`
	Started time.Time `json:"started"`
	Results []Result  `json:"results"`
	Peer    []Result  `json:"peer,omitempty"`
}

// WriteJSON writes r as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("bench: write json: %w", err)
	}
	return nil
}

// peerFor returns the peer result for res's workload (of the same
// Spec.Label), if any.
func (r Report) peerFor(res Result) (Result, bool) {
	i := slices.IndexFunc(r.Peer, func(p Result) bool { return p.Spec.Label() == res.Spec.Label() })
	if i < 0 {
		return Result{}, false
	}
	return r.Peer[i], true
}

// WriteTable writes a readable table: every result, then the peer's, and,
// for results with a peer result of the same workload, the throughput
// and p99 ratios (ours over theirs: a throughput ratio above 1 and a p99
// ratio below 1 favour ringkv). "misses" are CAS misses and workload T's
// conflicts, with their share of the attempts (for T: conflicts over
// commits plus conflicts).
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tworkload\tlevel\tops/s\tp50\tp90\tp99\tp99.9\tmax\terrors\tmisses\tvs peer ops/s\tvs peer p99\t")
	row := func(res Result, compare bool) {
		ratio, p99 := "", ""
		if p, ok := r.peerFor(res); compare && ok && p.Throughput > 0 {
			ratio = fmt.Sprintf("%.2fx", res.Throughput/p.Throughput)
			if p.Latency.P99 > 0 {
				p99 = fmt.Sprintf("%.2fx", float64(res.Latency.P99)/float64(p.Latency.P99))
			}
		}
		errs := fmt.Sprint(res.Errors)
		if len(res.ErrorsByKind) > 0 {
			var kinds []string
			for k, n := range res.ErrorsByKind {
				kinds = append(kinds, fmt.Sprintf("%s:%d", k, n))
			}
			slices.Sort(kinds)
			errs += " (" + strings.Join(kinds, " ") + ")"
		}
		misses := ""
		switch {
		case res.Conflicts > 0:
			misses = fmt.Sprintf("%d (%.2f%%)", res.Conflicts, 100*float64(res.Conflicts)/float64(res.Ops+res.Conflicts))
		case res.CASMisses > 0:
			misses = fmt.Sprintf("%d (%.2f%%)", res.CASMisses, 100*float64(res.CASMisses)/float64(max(res.Ops, 1)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", res.Target, res.Spec.Label(), res.Spec.Level,
			res.Throughput, us(res.Latency.P50), us(res.Latency.P90), us(res.Latency.P99), us(res.Latency.P999), us(res.Latency.Max),
			errs, misses, ratio, p99)
	}
	for _, res := range r.Results {
		row(res, true)
	}
	for _, res := range r.Peer {
		row(res, false)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: write table: %w", err)
	}
	return nil
}

// us formats microseconds for people.
func us(v int64) string {
	switch {
	case v >= 1_000_000:
		return fmt.Sprintf("%.2fs", float64(v)/1e6)
	case v >= 1000:
		return fmt.Sprintf("%.2fms", float64(v)/1e3)
	default:
		return fmt.Sprintf("%dµs", v)
	}
}

// WriteHTML writes one self-contained page (no scripts, no external
// files): per workload, a throughput chart and a latency-percentile chart
// of every level and target, then the table.
func (r Report) WriteHTML(w io.Writer) error {
	var table strings.Builder
	if err := r.WriteTable(&table); err != nil {
		return err
	}
	type section struct {
		Workload   string
		Throughput template.HTML
		Latency    template.HTML
	}
	var sections []section
	for _, wl := range Workloads {
		var rows []Result
		for _, res := range append(slices.Clone(r.Results), r.Peer...) {
			if res.Spec.Workload == wl {
				rows = append(rows, res)
			}
		}
		if len(rows) == 0 {
			continue
		}
		sections = append(sections, section{Workload: wl, Throughput: throughputSVG(rows), Latency: latencySVG(rows)})
	}
	err := pageTemplate.Execute(w, struct {
		Report
		Sections []section
		Table    string
	}{r, sections, table.String()})
	if err != nil {
		return fmt.Errorf("bench: write html: %w", err)
	}
	return nil
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>ringkv bench</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h2{margin-top:2em;border-bottom:1px solid #ddd}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}
svg text{font-size:12px;font-family:system-ui,sans-serif}
.meta{color:#666}
</style></head><body>
<h1>ringkv bench</h1>
<p class="meta">{{.Started.Format "2006-01-02 15:04:05 MST"}} · {{.Machine}}<br><code>{{.Command}}</code></p>
{{range .Sections}}<h2>Workload {{.Workload}}</h2>
<h3>Throughput (ops/s)</h3>{{.Throughput}}
<h3>Latency percentiles (log scale)</h3>{{.Latency}}
{{end}}
<h2>Table</h2><pre>{{.Table}}</pre>
</body></html>
`))

func label(res Result) string {
	if res.Spec.Workload == WorkloadT {
		return res.Target + " " + res.Spec.Label()
	}
	return res.Target + " " + res.Spec.Level
}

var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7"}

// throughputSVG draws one horizontal bar per result.
func throughputSVG(rows []Result) template.HTML {
	const labelW, barW, rowH = 170, 600, 24
	top := 0.0
	for _, r := range rows {
		top = math.Max(top, r.Throughput)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">`, labelW+barW+90, rowH*len(rows)+10)
	for i, r := range rows {
		y := i*rowH + 5
		width := 0.0
		if top > 0 {
			width = r.Throughput / top * barW
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, labelW-6, y+16, template.HTMLEscapeString(label(r)))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, labelW, y+2, width, rowH-6, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%.0f</text>`, float64(labelW)+width+6, y+16, r.Throughput)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from escaped labels and numbers only
}

// latencySVG draws, per result, markers at p50, p90, p99 and p99.9 on a
// logarithmic axis from 10µs to the slowest p99.9.
func latencySVG(rows []Result) template.HTML {
	const labelW, plotW, rowH = 170, 600, 24
	lo, hi := math.Log10(10), math.Log10(10)
	for _, r := range rows {
		hi = math.Max(hi, math.Log10(float64(max(r.Latency.P999, 10))))
	}
	hi = math.Ceil(hi)
	if hi <= lo {
		hi = lo + 1
	}
	x := func(v int64) float64 {
		return labelW + (math.Log10(float64(max(v, 10)))-lo)/(hi-lo)*plotW
	}
	height := rowH*len(rows) + 60
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">`, labelW+plotW+40, height)
	for d := lo; d <= hi; d++ {
		v := int64(math.Pow(10, d))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="0" y2="%d" stroke="#ddd"/>`, x(v), x(v), height-40)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, x(v), height-26, us(v))
	}
	marks := []struct {
		name string
		get  func(Latency) int64
	}{{"p50", func(l Latency) int64 { return l.P50 }}, {"p90", func(l Latency) int64 { return l.P90 }},
		{"p99", func(l Latency) int64 { return l.P99 }}, {"p99.9", func(l Latency) int64 { return l.P999 }}}
	for i, r := range rows {
		y := i*rowH + 5
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, labelW-6, y+16, template.HTMLEscapeString(label(r)))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#999"/>`, x(r.Latency.P50), x(r.Latency.P999), y+12, y+12)
		for j, m := range marks {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%d" r="5" fill="%s"><title>%s %s</title></circle>`, x(m.get(r.Latency)), y+12, palette[j], m.name, us(m.get(r.Latency)))
		}
	}
	for j, m := range marks {
		fmt.Fprintf(&b, `<circle cx="%d" cy="%d" r="5" fill="%s"/><text x="%d" y="%d">%s</text>`, labelW+j*80, height-8, palette[j], labelW+j*80+8, height-4, m.name)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from escaped labels and numbers only
}
