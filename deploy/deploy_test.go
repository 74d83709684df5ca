package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sentry-jml/sentry-jml/internal/policy"
)

// repo is the repository root, relative to this package's directory.
const repo = ".."

func path(p ...string) string { return filepath.Join(append([]string{repo}, p...)...) }

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlDocs decodes every document of a YAML stream.
func yamlDocs(t *testing.T, p string) []any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(mustRead(t, p)))
	var docs []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if v != nil {
			docs = append(docs, v)
		}
	}
}

func mustYAML(t *testing.T, p string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(mustRead(t, p), v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

// ---------- files parse ----------

func TestYAMLAndJSONParse(t *testing.T) {
	var files []string
	err := filepath.WalkDir(path("deploy"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "secrets" {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yml") || strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".json")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, path("docker-compose.yml"))
	if len(files) < 15 {
		t.Fatalf("found only %d files: %v", len(files), files)
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".json") {
			var v any
			if err := json.Unmarshal(mustRead(t, f), &v); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			continue
		}
		if len(yamlDocs(t, f)) == 0 {
			t.Errorf("%s: no YAML document", f)
		}
	}
}

// ---------- environment variables ----------

// configVars parses cmd/internal/config with go/ast: every envconfig tag is
// JML_<tag>, and every name in secretVars may also be given as JML_<name>_FILE.
func configVars(t *testing.T) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	dir := path("cmd", "internal", "config")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	var secrets []string
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.Field:
				if n.Tag == nil {
					return true
				}
				tag, err := strconv.Unquote(n.Tag.Value)
				if err != nil {
					return true
				}
				if name, ok := reflect.StructTag(tag).Lookup("envconfig"); ok {
					vars["JML_"+name] = true
				}
			case *ast.ValueSpec:
				for i, id := range n.Names {
					if id.Name != "secretVars" || i >= len(n.Values) {
						continue
					}
					lit, ok := n.Values[i].(*ast.CompositeLit)
					if !ok {
						continue
					}
					for _, el := range lit.Elts {
						if bl, ok := el.(*ast.BasicLit); ok {
							s, _ := strconv.Unquote(bl.Value)
							secrets = append(secrets, s)
						}
					}
				}
			}
			return true
		})
	}
	if len(vars) < 10 || len(secrets) == 0 {
		t.Fatalf("parsed %d envconfig tags and %d secret names from %s: has the layout changed?", len(vars), len(secrets), dir)
	}
	for _, s := range secrets {
		if !vars["JML_"+s] {
			t.Errorf("secretVars names %s, which no envconfig tag reads", s)
		}
		vars["JML_"+s+"_FILE"] = true
	}
	return vars
}

// otelVars are the standard OpenTelemetry SDK variables the deployment may set.
var otelVars = map[string]bool{
	"OTEL_SERVICE_NAME": true, "OTEL_RESOURCE_ATTRIBUTES": true, "OTEL_SDK_DISABLED": true,
	"OTEL_TRACES_EXPORTER": true, "OTEL_METRICS_EXPORTER": true, "OTEL_LOGS_EXPORTER": true,
	"OTEL_EXPORTER_OTLP_ENDPOINT": true, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": true, "OTEL_EXPORTER_OTLP_PROTOCOL": true,
	"OTEL_EXPORTER_OTLP_HEADERS": true, "OTEL_EXPORTER_OTLP_TIMEOUT": true, "OTEL_EXPORTER_OTLP_COMPRESSION": true,
	"OTEL_EXPORTER_OTLP_CERTIFICATE": true, "OTEL_TRACES_SAMPLER": true, "OTEL_TRACES_SAMPLER_ARG": true, "OTEL_PROPAGATORS": true,
	"OTEL_BSP_SCHEDULE_DELAY": true, "OTEL_BSP_MAX_QUEUE_SIZE": true, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": true, "OTEL_BSP_EXPORT_TIMEOUT": true,
}

func checkEnvName(t *testing.T, vars map[string]bool, where, name string) {
	t.Helper()
	switch {
	case vars[name], otelVars[name]:
	case strings.HasPrefix(name, "OTEL_"):
		t.Errorf("%s: %s is not a standard OTEL_* variable this test knows (add it to otelVars if it is)", where, name)
	default:
		t.Errorf("%s: %s is not read by cmd/internal/config (no envconfig tag, not a secret's _FILE form)", where, name)
	}
}

// isSecretFile reports whether name is the _FILE form of a secret variable.
func isSecretFile(vars map[string]bool, name string) bool {
	base, ok := strings.CutSuffix(name, "_FILE")
	return ok && vars[name] && vars[base]
}

func TestConfigVarsParsed(t *testing.T) {
	vars := configVars(t)
	for _, want := range []string{"JML_NATS_URL", "JML_REDIS_URL", "JML_REDIS_ADDRS", "JML_REDIS_MASTER_NAME", "JML_STREAM_REPLICAS", "JML_SENTRY_TOKEN_FILE", "JML_HTTP_ADDR", "JML_ADMIN_ADDR"} {
		if !vars[want] {
			t.Errorf("config does not read %s", want)
		}
	}
}

// ---------- docker-compose.yml ----------

type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	User        string            `yaml:"user"`
	ReadOnly    bool              `yaml:"read_only"`
	CapDrop     []string          `yaml:"cap_drop"`
	Environment map[string]string `yaml:"environment"`
	Secrets     []string          `yaml:"secrets"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	DependsOn   map[string]any    `yaml:"depends_on"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	mustYAML(t, path("docker-compose.yml"), &c) // yaml.v3 resolves the << merge keys
	return c
}

// interpolated strips compose's ${VAR:-default} / ${VAR:?err} to the default or "".
func interpolated(s string) string {
	return regexp.MustCompile(`\$\{[A-Z_]+(?::?[-?]([^}]*))?\}`).ReplaceAllStringFunc(s, func(m string) string {
		if i := strings.Index(m, ":-"); i >= 0 {
			return strings.TrimSuffix(m[i+2:], "}")
		}
		return ""
	})
}

func isJML(s composeService) bool { return s.Image == "sentry-jml:local" }

func TestCompose(t *testing.T) {
	c := loadCompose(t)
	vars := configVars(t)
	for _, want := range []string{"nats", "redis", "webhook", "otel-collector", "jaeger", "prometheus", "grafana"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("service %s missing", want)
		}
	}
	var workers []string
	for name, s := range c.Services {
		where := "docker-compose.yml: " + name
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s: depends_on unknown service %s", where, dep)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				t.Errorf("%s: secret %s is not declared", where, sec)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			switch {
			case strings.HasPrefix(src, "./"):
				if _, err := os.Stat(path(src)); err != nil {
					t.Errorf("%s: bind mount source %s: %v", where, src, err)
				}
			case strings.HasPrefix(src, "/"):
				t.Errorf("%s: absolute host path %s (keep the project relocatable)", where, src)
			default:
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("%s: named volume %s is not declared", where, src)
				}
			}
		}
		if !isJML(s) {
			continue
		}
		if s.Build == nil {
			t.Errorf("%s: the sentry-jml image must be built from the Dockerfile (build: .)", where)
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") || s.User == "" || strings.HasPrefix(s.User, "0") || strings.HasPrefix(s.User, "root") {
			t.Errorf("%s: want read_only, cap_drop [ALL] and a non-root user; got read_only=%v cap_drop=%v user=%q", where, s.ReadOnly, s.CapDrop, s.User)
		}
		for k, v := range s.Environment {
			checkEnvName(t, vars, where, k)
			if isSecretFile(vars, k) {
				sec, ok := strings.CutPrefix(v, "/run/secrets/")
				if !ok || !slices.Contains(s.Secrets, sec) {
					t.Errorf("%s: %s=%s is not one of the service's secrets (/run/secrets/<name>)", where, k, v)
				}
			}
		}
		if s.Environment["OTEL_TRACES_EXPORTER"] != "otlp" || s.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"] != "http://otel-collector:4318" {
			t.Errorf("%s: want OTEL_TRACES_EXPORTER=otlp and OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4318", where)
		}
		if len(s.Entrypoint) == 1 && s.Entrypoint[0] == "/usr/local/bin/worker" {
			workers = append(workers, name)
			if s.Environment["JML_REDIS_URL"] == "" && s.Environment["JML_REDIS_ADDRS"] == "" {
				t.Errorf("%s: a worker needs JML_REDIS_URL or JML_REDIS_ADDRS", where)
			}
			if s.Environment["JML_SENTRY_TOKEN_FILE"] == "" || s.Environment["JML_SENTRY_TOKEN"] != "" {
				t.Errorf("%s: the Sentry token must come from a file (JML_SENTRY_TOKEN_FILE)", where)
			}
		}
		if s.Environment["JML_NATS_URL"] != "nats://nats:4222" {
			t.Errorf("%s: JML_NATS_URL = %q", where, s.Environment["JML_NATS_URL"])
		}
	}
	if len(workers) < 2 {
		t.Errorf("want two worker services, got %v", workers)
	}
	for name, sec := range c.Secrets {
		if !strings.HasPrefix(sec.File, "./deploy/compose/secrets/") {
			t.Errorf("secret %s: file %s outside deploy/compose/secrets (git-ignored there)", name, sec.File)
		}
	}
	for name := range c.Volumes {
		used := false
		for _, s := range c.Services {
			for _, v := range s.Volumes {
				used = used || strings.HasPrefix(v, name+":")
			}
		}
		if !used {
			t.Errorf("volume %s is declared but unused", name)
		}
	}
	// Secrets must never be inlined as values.
	for name, s := range c.Services {
		for k, v := range s.Environment {
			if strings.Contains(k, "SECRET") || strings.Contains(k, "TOKEN") || strings.Contains(k, "PASSWORD") {
				if !strings.HasSuffix(k, "_FILE") && !strings.HasSuffix(k, "__FILE") && v != "" {
					t.Errorf("%s: %s is set inline; use %s_FILE", name, k, k)
				}
			}
		}
	}
}

// mountedAt returns the host file a service mounts at target ("" when none).
func mountedAt(s composeService, target string) string {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			return parts[0]
		}
	}
	return ""
}

func hostPort(t *testing.T, where, hp string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		t.Fatalf("%s: %q: %v", where, hp, err)
	}
	return h, p
}

func TestPrometheusConfig(t *testing.T) {
	c := loadCompose(t)
	prom := c.Services["prometheus"]
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	mustYAML(t, path("deploy", "compose", "prometheus.yml"), &cfg)
	if mountedAt(prom, "/etc/prometheus/prometheus.yml") != "./deploy/compose/prometheus.yml" {
		t.Error("prometheus does not mount deploy/compose/prometheus.yml")
	}
	for _, rf := range cfg.RuleFiles {
		if src := mountedAt(prom, rf); src == "" {
			t.Errorf("rule file %s is not mounted into the prometheus service", rf)
		} else if _, err := os.Stat(path(src)); err != nil {
			t.Error(err)
		}
	}
	jobs := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			jobs[sc.JobName] = append(jobs[sc.JobName], st.Targets...)
		}
	}
	// Every app process is scraped on the port its address variable names.
	scraped := map[string]bool{}
	for _, ts := range jobs {
		for _, tg := range ts {
			h, _ := hostPort(t, "prometheus.yml", tg)
			if h == "localhost" {
				continue
			}
			if _, ok := c.Services[h]; !ok {
				t.Errorf("prometheus.yml: target %s is not a compose service", tg)
			}
			scraped[tg] = true
		}
	}
	// Every app process is scraped on its admin listener (JML_ADMIN_ADDR), where
	// /metrics is served; never on the public webhook port (JML_HTTP_ADDR).
	for name, s := range c.Services {
		if !isJML(s) {
			continue
		}
		addr := s.Environment["JML_ADMIN_ADDR"]
		if addr == "" {
			t.Errorf("%s: JML_ADMIN_ADDR is not set: its /metrics would listen on loopback only", name)
			continue
		}
		_, p := hostPort(t, name, addr)
		if !scraped[name+":"+p] {
			t.Errorf("%s:%s (its /metrics, on the admin listener) is not scraped", name, p)
		}
		if h := s.Environment["JML_HTTP_ADDR"]; h != "" {
			if _, hp := hostPort(t, name, h); scraped[name+":"+hp] {
				t.Errorf("%s:%s is the public webhook port: /metrics is not served there", name, hp)
			}
			for _, pub := range s.Ports {
				if strings.HasSuffix(interpolated(pub), ":"+p) && !strings.HasPrefix(interpolated(pub), "127.0.0.1:") {
					t.Errorf("%s: the admin port %s is published beyond loopback (%s)", name, p, pub)
				}
			}
		}
	}
	if !slices.Contains(jobs["sentry-jml-worker"], "worker-1:8081") || len(jobs["sentry-jml-webhook"]) == 0 {
		t.Errorf("jobs = %v; the alert rules select job=~\"sentry-jml-.*\" and job=\"sentry-jml-worker\"", jobs)
	}
}

func TestOtelCollectorConfig(t *testing.T) {
	c := loadCompose(t)
	if mountedAt(c.Services["otel-collector"], "/etc/otelcol/config.yaml") != "./deploy/compose/otel-collector.yaml" {
		t.Error("otel-collector does not mount deploy/compose/otel-collector.yaml at its --config path")
	}
	var cfg struct {
		Extensions map[string]any `yaml:"extensions"`
		Receivers  map[string]struct {
			Protocols map[string]struct {
				Endpoint string `yaml:"endpoint"`
			} `yaml:"protocols"`
		} `yaml:"receivers"`
		Processors map[string]any `yaml:"processors"`
		Exporters  map[string]struct {
			Endpoint string `yaml:"endpoint"`
		} `yaml:"exporters"`
		Service struct {
			Extensions []string `yaml:"extensions"`
			Pipelines  map[string]struct {
				Receivers, Processors, Exporters []string
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	mustYAML(t, path("deploy", "compose", "otel-collector.yaml"), &cfg)
	for _, e := range cfg.Service.Extensions {
		if _, ok := cfg.Extensions[e]; !ok {
			t.Errorf("service.extensions: %s not configured", e)
		}
	}
	if _, ok := cfg.Service.Pipelines["traces"]; !ok {
		t.Fatal("no traces pipeline")
	}
	for name, p := range cfg.Service.Pipelines {
		for _, r := range p.Receivers {
			if _, ok := cfg.Receivers[r]; !ok {
				t.Errorf("pipeline %s: receiver %s not configured", name, r)
			}
		}
		for _, pr := range p.Processors {
			if _, ok := cfg.Processors[pr]; !ok {
				t.Errorf("pipeline %s: processor %s not configured", name, pr)
			}
		}
		if len(p.Processors) > 0 && p.Processors[0] != "memory_limiter" && slices.Contains(p.Processors, "memory_limiter") {
			t.Errorf("pipeline %s: memory_limiter must come first", name)
		}
		for _, e := range p.Exporters {
			if _, ok := cfg.Exporters[e]; !ok {
				t.Errorf("pipeline %s: exporter %s not configured", name, e)
			}
		}
	}
	// The apps' OTLP/HTTP endpoint is the receiver's http endpoint.
	u, err := url.Parse(c.Services["webhook"].Environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
	if err != nil {
		t.Fatal(err)
	}
	_, p := hostPort(t, "otlp http receiver", cfg.Receivers["otlp"].Protocols["http"].Endpoint)
	if u.Hostname() != "otel-collector" || u.Port() != p {
		t.Errorf("apps export to %s but the collector listens for OTLP/HTTP on :%s", u, p)
	}
	// Traces reach Jaeger, a compose service.
	var toJaeger bool
	for _, e := range cfg.Service.Pipelines["traces"].Exporters {
		if h, _, err := net.SplitHostPort(cfg.Exporters[e].Endpoint); err == nil && h == "jaeger" {
			_, toJaeger = c.Services[h]
		}
	}
	if !toJaeger {
		t.Error("the traces pipeline does not export to the jaeger service")
	}
}

// ---------- Grafana ----------

func TestGrafanaProvisioning(t *testing.T) {
	c := loadCompose(t)
	g := c.Services["grafana"]
	if mountedAt(g, "/etc/grafana/provisioning") != "./deploy/compose/grafana/provisioning" {
		t.Error("grafana does not mount the provisioning directory")
	}
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	mustYAML(t, path("deploy", "compose", "grafana", "provisioning", "dashboards", "dashboards.yaml"), &prov)
	if len(prov.Providers) != 1 || mountedAt(g, prov.Providers[0].Options.Path) != "./deploy/compose/grafana/dashboards" {
		t.Errorf("dashboard provider path is not the mounted dashboards directory: %+v", prov)
	}
	for _, uid := range []string{"prometheus", "jaeger"} {
		u := datasources(t)[uid]
		if u == "" {
			t.Errorf("datasource %s not provisioned", uid)
			continue
		}
		pu, _ := url.Parse(u)
		if _, ok := c.Services[pu.Hostname()]; !ok {
			t.Errorf("datasource %s points at %s, not a compose service", uid, u)
		}
	}
}

func datasources(t *testing.T) map[string]string {
	t.Helper()
	var ds struct {
		Datasources []struct{ UID, URL string } `yaml:"datasources"`
	}
	mustYAML(t, path("deploy", "compose", "grafana", "provisioning", "datasources", "datasources.yaml"), &ds)
	out := map[string]string{}
	for _, d := range ds.Datasources {
		out[d.UID] = d.URL
	}
	return out
}

type dashboardPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

func dashboard(t *testing.T) (uid string, panels []dashboardPanel) {
	t.Helper()
	var d struct {
		UID    string           `json:"uid"`
		Panels []dashboardPanel `json:"panels"`
	}
	if err := json.Unmarshal(mustRead(t, path("deploy", "compose", "grafana", "dashboards", "sentry-jml.json")), &d); err != nil {
		t.Fatal(err)
	}
	var flat []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			flat = append(flat, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return d.UID, flat
}

var (
	reString     = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	reMatchers   = regexp.MustCompile(`\{[^{}]*\}`)
	reRange      = regexp.MustCompile(`\[[^\]]*\]`)
	reGrouping   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	reIdent      = regexp.MustCompile(`(^|[^A-Za-z0-9_:.$])([A-Za-z_:][A-Za-z0-9_:]*)`)
	promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true, "Inf": true, "NaN": true}
)

// metricNames returns the metric names a PromQL expression selects.
func metricNames(expr string) []string {
	e := reString.ReplaceAllString(expr, `""`)
	e = reMatchers.ReplaceAllString(e, "")
	e = reRange.ReplaceAllString(e, "")
	e = reGrouping.ReplaceAllString(e, "")
	var out []string
	for _, m := range reIdent.FindAllStringSubmatchIndex(e, -1) {
		name := e[m[4]:m[5]]
		rest := strings.TrimLeft(e[m[5]:], " \t\n")
		if promKeywords[name] || strings.HasPrefix(rest, "(") {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNamesParser(t *testing.T) {
	for expr, want := range map[string][]string{
		`histogram_quantile(0.99, sum by (le) (rate(jml_time_to_revoke_seconds_bucket{le!="x"}[$__rate_interval]))) > 5`: {"jml_time_to_revoke_seconds_bucket"},
		`sum(increase(a_total[15m])) > 0 or sum(increase(b_total{x="y(z)"}[1h])) > 1e5`:                                  {"a_total", "b_total"},
		`min(jml_org_token_expiry_seconds) < 7 * 24 * 3600`:                                                              {"jml_org_token_expiry_seconds"},
		`absent(up{job="sentry-jml-worker"} == 1)`:                                                                       {"up"},
		`x / on (instance) group_left (job) y`:                                                                           {"x", "y"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%q) = %v, want %v", expr, got, want)
		}
	}
}

func TestDashboard(t *testing.T) {
	uid, panels := dashboard(t)
	if uid != "sentry-jml" {
		t.Errorf("uid = %q", uid)
	}
	ds := datasources(t)
	ids := map[int]bool{}
	used := map[string]bool{}
	for _, p := range panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || ds[p.Datasource.UID] == "" {
			t.Errorf("panel %q: datasource not provisioned", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := metricNames(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: no metric in %q", p.Title, tg.Expr)
			}
			for _, n := range names {
				base, ok := lookupMetric(n)
				if !ok {
					t.Errorf("panel %q: unknown metric %s in %q", p.Title, n, tg.Expr)
				}
				used[base] = true
			}
		}
	}
	for name, m := range knownMetrics() {
		if m.required && !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}

// ---------- alert rules ----------

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestAlertRules(t *testing.T) {
	var rf ruleFile
	mustYAML(t, path("deploy", "compose", "prometheus", "alerts.yml"), &rf)
	alerts := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if _, dup := alerts[r.Alert]; dup {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = r.Expr
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
				t.Errorf("%s: severity = %q", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary and description annotations are required", r.Alert)
			}
			for _, n := range metricNames(r.Expr) {
				if _, ok := lookupMetric(n); !ok {
					t.Errorf("%s: unknown metric %s", r.Alert, n)
				}
			}
		}
	}
	// What issue 8 asks to alert on, by the metric that shows it.
	for what, metric := range map[string]string{
		"time to revoke p99 > 5 s": "jml_time_to_revoke_seconds_bucket",
		"DLQ growth":               "jml_dlq_messages_total",
		"needs_human":              "jml_needs_human_total",
		"disputed":                 "jml_disputed_total",
		"DLQ backlog":              "jml_dlq_depth",
		"consumer backlog":         "jml_consumer_pending",
		"errors, not waits":        `outcome="error"`,
		"brakes halted":            "jml_brakes_halted_total",
		"token rejected":           `http_response_status_code="401"`,
		"readiness":                "up{",
	} {
		found := false
		for _, expr := range alerts {
			found = found || strings.Contains(expr, metric)
		}
		if !found {
			t.Errorf("no alert for %s (an expression using %s)", what, metric)
		}
	}
}

// TestPromtool runs promtool (Debian package "prometheus"; .ci/run installs it and
// the test fails without it): the Prometheus config, the rule files, the rule unit
// tests, and every dashboard expression's syntax.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		// .ci/run installs it; a skip here would pass without checking anything.
		t.Fatal("promtool not installed: apt-get install --no-install-recommends prometheus (Debian), or run .ci/run")
	}
	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	tmp := t.TempDir()
	cfg := bytes.ReplaceAll(mustRead(t, path("deploy", "compose", "prometheus.yml")), []byte("/etc/prometheus/alerts.yml"), []byte("alerts.yml"))
	write(t, filepath.Join(tmp, "prometheus.yml"), cfg)
	write(t, filepath.Join(tmp, "alerts.yml"), mustRead(t, path("deploy", "compose", "prometheus", "alerts.yml")))
	run(tmp, "check", "config", "prometheus.yml")
	run(tmp, "check", "rules", "alerts.yml")
	abs, _ := filepath.Abs(path("deploy", "compose", "prometheus"))
	run(abs, "test", "rules", "alerts_test.yml")

	// Dashboard queries as recording rules: promtool parses each one.
	_, panels := dashboard(t)
	var rules []map[string]string
	for _, p := range panels {
		for i, tg := range p.Targets {
			rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:panel_%d_%d", p.ID, i), "expr": strings.ReplaceAll(tg.Expr, "$__rate_interval", "5m")})
		}
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(tmp, "dashboard-rules.yml"), b)
	run(tmp, "check", "rules", "dashboard-rules.yml")
}

func write(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// ---------- sources ----------

// sourceText concatenates the non-test Go files of dir.
func sourceText(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".go") && !strings.HasSuffix(e.Name(), "_test.go") {
			b.Write(mustRead(t, filepath.Join(dir, e.Name())))
		}
	}
	return b.String()
}

// ---------- Dockerfile ----------

func TestDockerfile(t *testing.T) {
	df := string(mustRead(t, path("Dockerfile")))
	var froms, users []string
	args := map[string]string{}
	for _, line := range strings.Split(df, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, line)
			users = append(users, "") // USER is per stage
		case "USER":
			users[len(users)-1] = f[1]
		case "ARG":
			if k, v, ok := strings.Cut(f[1], "="); ok {
				args[k] = v
			}
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, got %d FROM lines", len(froms))
	}
	final := users[len(users)-1]
	if final == "" || strings.HasPrefix(final, "0") || strings.HasPrefix(final, "root") {
		t.Errorf("final stage USER = %q, want a non-root user", final)
	}
	if uid, _, _ := strings.Cut(final, ":"); uid != "" {
		if _, err := strconv.Atoi(uid); err != nil {
			t.Errorf("final USER %q is not numeric: Kubernetes runAsNonRoot cannot verify a name", final)
		}
	}
	if !strings.Contains(froms[len(froms)-1], "distroless/static") && !strings.Contains(froms[len(froms)-1], "scratch") {
		t.Errorf("final stage %q is not a minimal static base", froms[len(froms)-1])
	}
	if !strings.Contains(df, "CGO_ENABLED=0") {
		t.Error("the binaries must be static (CGO_ENABLED=0) for distroless/static")
	}
	for _, cmd := range []string{"./cmd/jml", "./cmd/webhook", "./cmd/worker"} {
		if !strings.Contains(df, cmd) {
			t.Errorf("Dockerfile does not build %s", cmd)
		}
	}
	// The Go version of the build stage matches go.mod's go directive (major.minor).
	gomod := string(mustRead(t, path("go.mod")))
	mv := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if mv == nil || args["GO_VERSION"] != mv[1] {
		t.Errorf("Dockerfile GO_VERSION = %q, go.mod says go %v", args["GO_VERSION"], mv)
	}
	ignore := string(mustRead(t, path(".dockerignore")))
	for _, want := range []string{".git", ".jml-data", "deploy/compose/secrets"} {
		if !slices.Contains(strings.Split(ignore, "\n"), want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
	// Entrypoints used by compose exist in the image.
	for name, s := range loadCompose(t).Services {
		if isJML(s) && len(s.Entrypoint) > 0 && !strings.Contains(df, "/usr/local/bin/") {
			t.Errorf("%s: entrypoint %v not provided by the Dockerfile", name, s.Entrypoint)
		}
	}
}

// ---------- Kubernetes ----------

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas    *int `yaml:"replicas"`
		MinReplicas *int `yaml:"minReplicas"`
		Selector    struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		ScaleTargetRef struct {
			Kind, Name string
		} `yaml:"scaleTargetRef"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct{ Name string } `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type k8sPodSpec struct {
	SecurityContext struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		RunAsUser    *int  `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Containers []struct {
		Name    string   `yaml:"name"`
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Env     []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		EnvFrom []struct {
			ConfigMapRef struct{ Name string } `yaml:"configMapRef"`
		} `yaml:"envFrom"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		LivenessProbe   *k8sProbe `yaml:"livenessProbe"`
		ReadinessProbe  *k8sProbe `yaml:"readinessProbe"`
		SecurityContext struct {
			ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			Capabilities             struct {
				Drop []string `yaml:"drop"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	} `yaml:"containers"`
	Volumes []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
			Items      []struct{ Key, Path string }
		} `yaml:"secret"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

func k8sObjects(t *testing.T) []k8sObject {
	t.Helper()
	var kust struct {
		Resources []string `yaml:"resources"`
	}
	mustYAML(t, path("deploy", "k8s", "kustomization.yaml"), &kust)
	var objs []k8sObject
	for _, r := range kust.Resources {
		dec := yaml.NewDecoder(bytes.NewReader(mustRead(t, path("deploy", "k8s", r))))
		for {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", r, err)
			}
			if o.Kind == "" || o.APIVersion == "" || o.Metadata.Name == "" {
				t.Errorf("%s: a document lacks kind, apiVersion or metadata.name", r)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

func TestKubernetesManifests(t *testing.T) {
	objs := k8sObjects(t)
	vars := configVars(t)
	byKind := map[string]map[string]k8sObject{}
	for _, o := range objs {
		if byKind[o.Kind] == nil {
			byKind[o.Kind] = map[string]k8sObject{}
		}
		byKind[o.Kind][o.Metadata.Name] = o
	}
	for _, want := range []string{"Deployment/webhook", "Deployment/worker", "Service/webhook", "HorizontalPodAutoscaler/webhook",
		"StatefulSet/nats", "PodDisruptionBudget/webhook", "PodDisruptionBudget/worker", "PodDisruptionBudget/nats", "NetworkPolicy/default-deny-ingress"} {
		kind, name, _ := strings.Cut(want, "/")
		if _, ok := byKind[kind][name]; !ok {
			t.Errorf("missing %s", want)
		}
	}
	if r := byKind["StatefulSet"]["nats"].Spec.Replicas; r == nil || *r != 3 {
		t.Error("NATS must run 3 replicas (R3 streams)")
	}
	if r := byKind["Deployment"]["worker"].Spec.Replicas; r == nil || *r < 2 {
		t.Error("want 2+ worker replicas")
	}
	if h := byKind["HorizontalPodAutoscaler"]["webhook"].Spec; h.ScaleTargetRef.Kind != "Deployment" || h.ScaleTargetRef.Name != "webhook" {
		t.Errorf("HPA targets %+v", h.ScaleTargetRef)
	}
	cm := byKind["ConfigMap"]["sentry-jml"]
	if cm.Data["JML_STREAM_REPLICAS"] != "3" {
		t.Error("the cluster needs JML_STREAM_REPLICAS=3")
	}
	for k := range cm.Data {
		checkEnvName(t, vars, "ConfigMap/sentry-jml", k)
	}
	adminPorts := map[string]string{} // container → admin port
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		for name, o := range byKind[kind] {
			where := kind + "/" + name
			for k, v := range o.Spec.Selector.MatchLabels {
				if o.Spec.Template.Metadata.Labels[k] != v {
					t.Errorf("%s: selector %s=%s does not match the template", where, k, v)
				}
			}
			ps := o.Spec.Template.Spec
			if ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
				t.Errorf("%s: runAsNonRoot is not set", where)
			}
			vols := map[string]int{}
			for i, v := range ps.Volumes {
				vols[v.Name] = i
			}
			for _, v := range o.Spec.VolumeClaimTemplates {
				vols[v.Metadata.Name] = -1
			}
			for _, c := range ps.Containers {
				cw := where + "/" + c.Name
				sc := c.SecurityContext
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !slices.Contains(sc.Capabilities.Drop, "ALL") {
					t.Errorf("%s: want readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL", cw)
				}
				if c.LivenessProbe == nil || c.ReadinessProbe == nil {
					t.Errorf("%s: liveness and readiness probes are required", cw)
					continue
				}
				mounts := map[string]string{}
				for _, m := range c.VolumeMounts {
					if _, ok := vols[m.Name]; !ok {
						t.Errorf("%s: mounts undeclared volume %s", cw, m.Name)
					}
					mounts[m.MountPath] = m.Name
				}
				if c.Image != "sentry-jml" {
					continue
				}
				if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
					t.Errorf("%s: probes must be /healthz (liveness) and /readyz (readiness)", cw)
				}
				for _, ef := range c.EnvFrom {
					if _, ok := byKind["ConfigMap"][ef.ConfigMapRef.Name]; !ok {
						t.Errorf("%s: envFrom unknown ConfigMap %s", cw, ef.ConfigMapRef.Name)
					}
				}
				refs := map[string]bool{}
				for _, e := range c.Env {
					for _, m := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(e.Value, -1) {
						refs[m[1]] = true
					}
				}
				for _, e := range c.Env {
					if refs[e.Name] { // a helper for $(NAME) substitution, e.g. POD_NAME
						continue
					}
					checkEnvName(t, vars, cw, e.Name)
					if isSecretFile(vars, e.Name) {
						dir, file := filepath.Split(e.Value)
						vol, ok := mounts[strings.TrimSuffix(dir, "/")]
						if !ok {
							t.Errorf("%s: %s=%s is not under a mounted volume", cw, e.Name, e.Value)
							continue
						}
						v := ps.Volumes[vols[vol]]
						if v.Secret != nil && !slices.ContainsFunc(v.Secret.Items, func(it struct{ Key, Path string }) bool { return it.Path == file }) {
							t.Errorf("%s: %s names %s, which secret volume %s does not project", cw, e.Name, file, vol)
						}
					}
				}
				// Probes and /metrics are on the admin listener (JML_ADMIN_ADDR), in
				// the container port named "admin" that the PodMonitor scrapes.
				addr := ""
				for _, e := range c.Env {
					if e.Name == "JML_ADMIN_ADDR" {
						addr = e.Value
					}
				}
				if addr == "" {
					t.Errorf("%s: JML_ADMIN_ADDR is not set (probes and /metrics listen there)", cw)
					continue
				}
				_, port := hostPort(t, cw, addr)
				for _, probe := range []*k8sProbe{c.LivenessProbe, c.ReadinessProbe} {
					if !slices.ContainsFunc(c.Ports, func(p struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					}) bool {
						return strconv.Itoa(p.ContainerPort) == port && p.Name == probe.HTTPGet.Port && p.Name == "admin"
					}) {
						t.Errorf("%s: the probe port %v is not the container port \"admin\" of JML_ADMIN_ADDR=%s", cw, probe.HTTPGet.Port, addr)
					}
				}
				adminPorts[cw] = port
			}
		}
	}
	for _, want := range []string{"Deployment/webhook/webhook", "Deployment/worker/worker"} {
		if _, ok := adminPorts[want]; !ok {
			t.Errorf("%s: no admin listener (JML_ADMIN_ADDR, port \"admin\") for probes and /metrics", want)
		}
	}
	checkScrapeAndIngress(t, adminPorts["Deployment/webhook/webhook"])
}

// checkScrapeAndIngress: the PodMonitor scrapes /metrics on the "admin" port
// only (never the webhook's public "http" port), and the webhook's
// NetworkPolicy lets the monitoring namespace reach the admin port, not the
// public one.
func checkScrapeAndIngress(t *testing.T, webhookAdmin string) {
	t.Helper()
	var pm struct {
		Kind string `yaml:"kind"`
		Spec struct {
			PodMetricsEndpoints []struct {
				Port string `yaml:"port"`
				Path string `yaml:"path"`
			} `yaml:"podMetricsEndpoints"`
		} `yaml:"spec"`
	}
	mustYAML(t, path("deploy", "k8s", "monitoring", "podmonitor.yaml"), &pm)
	if pm.Kind != "PodMonitor" || len(pm.Spec.PodMetricsEndpoints) == 0 {
		t.Fatalf("podmonitor.yaml: kind %q with %d endpoints", pm.Kind, len(pm.Spec.PodMetricsEndpoints))
	}
	for _, e := range pm.Spec.PodMetricsEndpoints {
		if e.Port != "admin" || e.Path != "/metrics" {
			t.Errorf("PodMonitor endpoint %s%s: want /metrics on the admin port only", e.Port, e.Path)
		}
	}
	type rule struct {
		From []struct {
			NamespaceSelector *struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"namespaceSelector"`
		} `yaml:"from"`
		Ports []struct {
			Port int `yaml:"port"`
		} `yaml:"ports"`
	}
	for _, doc := range yamlDocs(t, path("deploy", "k8s", "networkpolicy.yaml")) {
		b, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		var np struct {
			Metadata struct{ Name string } `yaml:"metadata"`
			Spec     struct {
				Ingress []rule `yaml:"ingress"`
			} `yaml:"spec"`
		}
		if err := yaml.Unmarshal(b, &np); err != nil {
			t.Fatal(err)
		}
		if np.Metadata.Name != "webhook" {
			continue
		}
		monitoringPorts := map[string]bool{}
		for _, r := range np.Spec.Ingress {
			for _, f := range r.From {
				if f.NamespaceSelector != nil && f.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "monitoring" {
					for _, p := range r.Ports {
						monitoringPorts[strconv.Itoa(p.Port)] = true
					}
				}
			}
		}
		if !monitoringPorts[webhookAdmin] || len(monitoringPorts) != 1 {
			t.Errorf("NetworkPolicy webhook: monitoring may reach ports %v, want only the admin port %s", monitoringPorts, webhookAdmin)
		}
		return
	}
	t.Error("NetworkPolicy webhook not found")
}

// TestPolicies validates the policies the deployments mount with the daemon's own parser.
func TestPolicies(t *testing.T) {
	if _, err := policy.Load(path("deploy", "compose", "policy.example.yaml")); err != nil {
		t.Errorf("compose policy: %v", err)
	}
	for _, o := range k8sObjects(t) {
		if o.Kind == "ConfigMap" && o.Metadata.Name == "sentry-jml-policy" {
			if _, err := policy.Parse("ConfigMap/sentry-jml-policy", []byte(o.Data["policy.yaml"])); err != nil {
				t.Errorf("k8s policy: %v", err)
			}
			return
		}
	}
	t.Error("ConfigMap sentry-jml-policy not found")
}

// TestKustomizeRenders runs `kubectl kustomize` when kubectl is installed (offline).
func TestKustomizeRenders(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	for _, dir := range []string{"k8s", filepath.Join("k8s", "monitoring")} {
		out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
		if err != nil {
			t.Errorf("kubectl kustomize deploy/%s: %v\n%s", dir, err, out)
		}
	}
}

// pinned reports whether an image reference names one build: a digest, or a tag
// other than latest.
func pinned(ref string) bool {
	if _, d, ok := strings.Cut(ref, "@"); ok {
		return strings.HasPrefix(d, "sha256:")
	}
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return false // no tag: Docker means :latest
	}
	return ref[i+1:] != "" && ref[i+1:] != "latest"
}

// TestImagesPinnedAndBuilt: the sentry-jml services build their image from the
// Dockerfile (nobody publishes one), every other image in compose and
// Kubernetes names a pinned tag, the kustomization pins sentry-jml's, and the
// build-and-push instructions in deploy/k8s/README.md use that same reference.
func TestImagesPinnedAndBuilt(t *testing.T) {
	c := loadCompose(t)
	jml := 0
	for name, s := range c.Services {
		if isJML(s) {
			jml++
			if s.Build == nil {
				t.Errorf("compose %s: sentry-jml must be built from the Dockerfile (build:)", name)
			}
			continue
		}
		if !pinned(interpolated(s.Image)) {
			t.Errorf("compose %s: image %q is not pinned (no tag, or :latest)", name, s.Image)
		}
	}
	if jml < 2 {
		t.Errorf("compose builds sentry-jml for %d services, want webhook and worker at least", jml)
	}

	var kust struct {
		Images []struct {
			Name    string `yaml:"name"`
			NewName string `yaml:"newName"`
			NewTag  string `yaml:"newTag"`
			Digest  string `yaml:"digest"`
		} `yaml:"images"`
	}
	mustYAML(t, path("deploy", "k8s", "kustomization.yaml"), &kust)
	var ref string
	for _, im := range kust.Images {
		if im.Name != "sentry-jml" {
			continue
		}
		switch {
		case im.Digest != "":
			ref = im.NewName + "@" + im.Digest
		case im.NewTag != "":
			ref = im.NewName + ":" + im.NewTag
		default:
			ref = im.NewName
		}
	}
	if ref == "" || !pinned(ref) {
		t.Fatalf("kustomization.yaml: the sentry-jml image %q is not pinned", ref)
	}
	readme := string(mustRead(t, path("deploy", "k8s", "README.md")))
	newName, tag, _ := strings.Cut(ref, ":")
	if !strings.Contains(readme, "IMAGE="+newName) || !strings.Contains(readme, "TAG="+tag) || !strings.Contains(readme, "docker push") {
		t.Errorf("deploy/k8s/README.md does not build and push %s (IMAGE=%s, TAG=%s)", ref, newName, tag)
	}
	imageLine := regexp.MustCompile(`(?m)^\s*-?\s*image:\s*"?([^"\s#]+)`)
	var files []string
	for _, glob := range []string{"*.yaml", "monitoring/*.yaml"} {
		m, _ := filepath.Glob(path("deploy", "k8s", glob))
		files = append(files, m...)
	}
	for _, f := range files {
		for _, m := range imageLine.FindAllStringSubmatch(string(mustRead(t, f)), -1) {
			if m[1] != "sentry-jml" && !pinned(m[1]) { // sentry-jml is replaced by the kustomization
				t.Errorf("%s: image %q is not pinned", f, m[1])
			}
		}
	}
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.Command(kubectl, "kustomize", path("deploy", "k8s")).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl kustomize: %v\n%s", err, out)
		}
		found := false
		for _, m := range imageLine.FindAllStringSubmatch(string(out), -1) {
			found = found || m[1] == ref
			if !pinned(m[1]) {
				t.Errorf("rendered manifests: image %q is not pinned", m[1])
			}
		}
		if !found {
			t.Errorf("rendered manifests do not run %s", ref)
		}
	}
}

func TestPinned(t *testing.T) {
	for ref, want := range map[string]bool{"nats:2.12-alpine": true, "r.example.com:5000/x": false, "r.example.com:5000/x:1.2": true,
		"x:latest": false, "x": false, "x@sha256:abc": true, "x:1@sha256:abc": true} {
		if pinned(ref) != want {
			t.Errorf("pinned(%q) = %v", ref, !want)
		}
	}
}
