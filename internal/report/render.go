package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"time"
)

// Formats.
const (
	FormatHTML = "html"
	FormatCSV  = "csv"
	FormatJSON = "json"
)

// ContentType is the MIME type of a format.
func ContentType(format string) string {
	switch format {
	case FormatCSV:
		return "text/csv; charset=utf-8"
	case FormatJSON:
		return "application/json"
	}
	return "text/html; charset=utf-8"
}

// Write renders r in format (html, csv or json).
func (r *Report) Write(w io.Writer, format string) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	var err error
	switch format {
	case FormatCSV:
		err = r.WriteCSV(bw)
	case FormatJSON:
		enc := json.NewEncoder(bw)
		enc.SetIndent("", " ")
		err = enc.Encode(r)
	case FormatHTML, "":
		err = r.WriteHTML(bw)
	default:
		return fmt.Errorf("report: unknown format %q (html, csv, json)", format)
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

// CSVHeader is the CSV's first line: the JSON rows' fields, in order.
var CSVHeader = []string{"person_key", "email", "event_id", "source", "run_id", "hr_effective_at", "accepted_at",
	"removal_confirmed_at", "time_to_revoke_seconds", "tokens_revoked", "tokens_reported", "sla_met", "why_not", "detail", "sampled", "evidence_seqs"}

// WriteCSV writes one line per row, the same rows as the JSON.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for _, row := range r.Rows {
		seqs := ""
		for i, s := range row.Records {
			if i > 0 {
				seqs += " "
			}
			seqs += strconv.FormatUint(s, 10)
		}
		ttr := ""
		if row.TimeToRevoke != nil {
			ttr = strconv.FormatFloat(time.Duration(*row.TimeToRevoke).Seconds(), 'f', 3, 64)
		}
		if err := cw.Write([]string{row.PersonKey, row.Email, row.EventID, row.Source, row.RunID, ts(row.EffectiveAt), ts(row.AcceptedAt),
			ts(row.ConfirmedAt), ttr, strconv.Itoa(row.TokensRevoked), strconv.Itoa(row.TokensReported), strconv.FormatBool(row.SLAMet),
			row.Why, row.Detail, strconv.FormatBool(row.Sampled), seqs}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func ts(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// human prints a duration for people: 42s, 3m12s, 5m, 2h05m, 4h, 3d04h.
func human(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour && d%time.Minute == 0:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", int(d.Hours()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// hts is a time for the HTML table: UTC, to the second, without a T.
func hts(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// bar is one histogram bar of the SVG chart.
type bar struct {
	X, Y, W, H, LabelX float64
	Label, Count       string
	Over               bool // bucket above the SLA
}

type chart struct {
	Width, Height, Base float64
	Bars                []bar
	SLAX                float64
	SLALabel            string
	Title               string
}

func (r *Report) chart() chart {
	c := chart{Width: 720, Height: 240, Base: 200, Title: "Time to revoke (leavers per bucket)"}
	maxN := 1
	for _, n := range r.Histogram {
		maxN = max(maxN, n)
	}
	n := len(r.Histogram)
	slot := (c.Width - 40) / float64(n)
	sla := time.Duration(r.SLA)
	for i, cnt := range r.Histogram {
		label := "> " + human(HistogramBounds[len(HistogramBounds)-1])
		lower := HistogramBounds[len(HistogramBounds)-1]
		if i < len(HistogramBounds) {
			label = "≤ " + human(HistogramBounds[i])
			lower = 0
			if i > 0 {
				lower = HistogramBounds[i-1]
			}
		}
		h := 170 * float64(cnt) / float64(maxN)
		x := 30 + float64(i)*slot
		c.Bars = append(c.Bars, bar{X: x + 4, Y: c.Base - h, W: slot - 8, H: h, LabelX: x + slot/2, Label: label,
			Count: strconv.Itoa(cnt), Over: lower >= sla})
		if i < len(HistogramBounds) && c.SLAX == 0 && HistogramBounds[i] >= sla {
			c.SLAX = x + slot
		}
	}
	if c.SLAX == 0 {
		c.SLAX = c.Width - 10
	}
	c.SLALabel = "SLA " + human(sla)
	return c
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"ts":  ts,
	"hts": hts,
	"dur": func(d *Duration) string {
		if d == nil {
			return "—"
		}
		return human(time.Duration(*d))
	},
	"human": func(d Duration) string { return human(time.Duration(d)) },
	"pct": func(a, b int) string {
		if b == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
	},
	"f1": func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
}).Parse(pageHTML))

type pageData struct {
	*Report
	Chart chart
}

// WriteHTML writes one self-contained, printable page: inline CSS, an
// inline SVG histogram, no script, nothing fetched.
func (r *Report) WriteHTML(w io.Writer) error {
	return page.Execute(w, pageData{Report: r, Chart: r.chart()})
}

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Deprovisioning report {{hts .From}} – {{hts .To}}</title>
<style>
 body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;margin:24px;max-width:1200px}
 h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #ccc;padding-bottom:4px}
 .meta{color:#555} table{border-collapse:collapse;width:100%;font-size:12.5px} th,td{border:1px solid #d0d0d0;padding:3px 6px;text-align:left;vertical-align:top}
 th{background:#f2f2f2} td.t{white-space:nowrap} td.num{text-align:right;font-variant-numeric:tabular-nums} .ok{color:#14632b;font-weight:600} .bad{color:#a4161a;font-weight:600}
 .cards{display:flex;gap:12px;flex-wrap:wrap} .card{border:1px solid #d0d0d0;border-radius:6px;padding:8px 14px;min-width:110px}
 .card b{display:block;font-size:20px} tr.sampled td:first-child{border-left:4px solid #3a5fcd}
 svg text{font:11px system-ui,sans-serif}
 @media print{body{margin:0;max-width:none} h2{break-after:avoid} tr{break-inside:avoid} thead{display:table-header-group}}
</style>
</head>
<body>
<h1>Deprovisioning report</h1>
<p class="meta">Window {{hts .From}} to {{hts .To}} · SLA {{human .SLA}} · generated {{hts .GeneratedAt}} from the signed evidence log of sentry-jml{{if .Sample}} · sample of {{.Sample}} with seed {{.Seed}}{{end}}</p>

<h2>Summary</h2>
<div class="cards">
 <div class="card">Leavers<b id="leavers">{{.Summary.Leavers}}</b></div>
 <div class="card">Removed<b>{{.Summary.Removed}}</b></div>
 <div class="card">Within SLA<b class="ok">{{.Summary.Met}}</b>{{pct .Summary.Met .Summary.Leavers}}</div>
 <div class="card">Breaches<b class="{{if .Summary.Breaches}}bad{{else}}ok{{end}}">{{.Summary.Breaches}}</b></div>
 <div class="card">p50<b>{{human .Summary.P50}}</b></div>
 <div class="card">p95<b>{{human .Summary.P95}}</b></div>
 <div class="card">max<b>{{human .Summary.Max}}</b></div>
</div>
{{if .Summary.ByWhy}}<p>Breaches by cause: {{range $k, $v := .Summary.ByWhy}}<span>{{$k}}: {{$v}}</span>; {{end}}</p>{{end}}

<figure style="margin:12px 0">
<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{{.Chart.Width}}" height="{{.Chart.Height}}" viewBox="0 0 {{.Chart.Width}} {{.Chart.Height}}" role="img" aria-label="{{.Chart.Title}}">
 <title>{{.Chart.Title}}</title>
 <line x1="30" y1="{{.Chart.Base}}" x2="{{.Chart.Width}}" y2="{{.Chart.Base}}" stroke="#888"/>
 {{range .Chart.Bars}}<g><rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" fill="{{if .Over}}#c8553d{{else}}#3a7d44{{end}}"><title>{{.Label}}: {{.Count}}</title></rect>
 <text x="{{.LabelX}}" y="{{.Y}}" dy="-3" text-anchor="middle">{{.Count}}</text>
 <text x="{{.LabelX}}" y="{{$.Chart.Base}}" dy="14" text-anchor="middle">{{.Label}}</text></g>
 {{end}}<line x1="{{.Chart.SLAX}}" y1="12" x2="{{.Chart.SLAX}}" y2="{{.Chart.Base}}" stroke="#a4161a" stroke-dasharray="4 3"/>
 <text x="{{.Chart.SLAX}}" y="10" text-anchor="middle" fill="#a4161a">{{.Chart.SLALabel}}</text>
 <text x="30" y="{{.Chart.Height}}" dy="-4">{{.Chart.Title}}; red: above the SLA</text>
</svg>
</figure>

<h2>Control mapping</h2>
<table id="controls"><thead><tr><th>Framework</th><th>Control</th><th>Requirement</th><th>Threshold</th><th>Within</th><th>Result</th></tr></thead><tbody>
{{range .Controls}}<tr><td>{{.Framework}}</td><td>{{.ID}}</td><td>{{.Requirement}}</td><td>{{.Threshold}}</td><td class="num">{{.Within}} / {{.Of}}</td><td class="{{if .Met}}ok{{else}}bad{{end}}">{{if .Met}}met{{else}}not met{{end}}</td></tr>
{{end}}</tbody></table>

<h2>Leavers</h2>
<table id="rows"><thead><tr><th>Person</th><th>Email</th><th>HR effective</th><th>Accepted</th><th>Removal confirmed</th><th>Time to revoke</th><th>Tokens revoked / reported</th><th>SLA</th><th>Why not</th><th>Evidence</th></tr></thead><tbody>
{{range .Rows}}<tr{{if .Sampled}} class="sampled"{{end}}><td>{{.PersonKey}}{{if .Sampled}} ◆{{end}}</td><td>{{.Email}}</td><td class="t">{{hts .EffectiveAt}}</td><td class="t">{{hts .AcceptedAt}}</td><td class="t">{{hts .ConfirmedAt}}</td><td class="num">{{dur .TimeToRevoke}}</td><td class="num">{{.TokensRevoked}} / {{.TokensReported}}</td><td class="{{if .SLAMet}}ok{{else}}bad{{end}}">{{if .SLAMet}}met{{else}}breach{{end}}</td><td>{{.Why}}{{if .Detail}} — {{.Detail}}{{end}}</td><td>{{range $i, $s := .Records}}{{if $i}}, {{end}}{{$s}}{{end}}</td></tr>
{{end}}</tbody></table>
{{if .Sample}}<p>◆ in the auditor sample ({{.Sample}} rows, seed {{.Seed}}; the same window, size and seed select the same rows).</p>{{end}}
<p class="meta">Times are UTC. Time to revoke runs from the HR effective time (or the event's time when HR gave none) to Sentry's answer to the removal. Evidence numbers are the records' sequence numbers in the hash-chained log; check them with <code>jml evidence verify</code>.</p>
</body>
</html>
`
