package imports_test

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/sentry-jml/sentry-jml"

// pkg is the part of `go list -json` the rules read.
type pkg struct {
	ImportPath   string
	Imports      []string // non-test code, direct
	Deps         []string // non-test code, transitive
	TestImports  []string
	XTestImports []string
}

// rule is one doc.go's "must not import": the packages matching pkgs may not
// import anything matching forbid. A pattern is a module-relative path
// ("internal/sentry"), an external path ("github.com/nats-io/nats.go"), or
// either ending in "/..." for the path and everything under it.
type rule struct {
	doc    string // the doc.go the rule comes from, and its words
	pkgs   []string
	forbid []string
	allow  []string // exceptions to forbid
	// direct: the module's packages count only where imported directly (by
	// default they count through any chain of imports).
	direct bool
	// tests: the package's tests are bound too (only when the doc says so).
	tests bool
}

var (
	backends   = []string{"internal/state/redisstate", "internal/state/memstate", "internal/state/jsstate"}
	natsLibs   = []string{"github.com/nats-io/nats.go/...", "github.com/nats-io/nats-server/v2/..."}
	redisLib   = []string{"github.com/redis/go-redis/..."}
	appLayers  = []string{"internal/handlers/...", "internal/app/...", "cmd/..."}
	sentryPkgs = []string{"internal/sentry"}
)

func cat(ss ...[]string) []string { return slices.Concat(ss...) }

var rules = []rule{
	{doc: "cmd/internal/config: Only cmd/* may import it", pkgs: []string{"internal/...", "test/..."}, forbid: []string{"cmd/internal/config"}, tests: true},
	{doc: "cmd/internal/wire: nothing under internal/ imports it", pkgs: []string{"internal/...", "test/..."}, forbid: []string{"cmd/internal/wire"}, tests: true},
	{doc: "internal/handlers: none of them parses configuration (and nothing in internal/ imports cmd)", pkgs: []string{"internal/..."}, forbid: []string{"cmd/..."}, tests: true},
	{doc: "internal/telemetry: must not import the daemon's domain packages", pkgs: []string{"internal/telemetry"}, forbid: []string{"internal/..."}},
	{doc: "internal/handlers/converge: must not import JetStream or the state backends", pkgs: []string{"internal/handlers/converge"}, forbid: cat(natsLibs, redisLib, backends)},
	{doc: "internal/handlers/resolve: must not import the receiver, NATS, Sentry, configuration or a provider package", pkgs: []string{"internal/handlers/resolve/..."}, forbid: cat(natsLibs, sentryPkgs, []string{"internal/handlers/receiver", "cmd/...", "internal/handlers/providers/..."})},
	{doc: "internal/handlers/worker: must not parse configuration or know about webhook formats", pkgs: []string{"internal/handlers/worker"}, forbid: []string{"cmd/...", "internal/handlers/sources/...", "internal/handlers/providers/...", "github.com/kelseyhightower/envconfig"}},
	{doc: "internal/handlers/sources: must not publish, touch Sentry, read configuration or import a provider package", pkgs: []string{"internal/handlers/sources/..."}, forbid: cat(natsLibs, sentryPkgs, []string{"cmd/...", "github.com/kelseyhightower/envconfig", "internal/handlers/providers/..."})},
	{doc: "internal/handlers/providers: must not read configuration, publish, or touch Sentry", pkgs: []string{"internal/handlers/providers"}, forbid: cat(natsLibs, sentryPkgs, []string{"cmd/...", "github.com/kelseyhightower/envconfig"})},
	{doc: "internal/handlers/scimserver: must not touch Sentry, read configuration or import a state backend", pkgs: []string{"internal/handlers/scimserver"}, forbid: cat(sentryPkgs, backends, redisLib, []string{"cmd/...", "github.com/kelseyhightower/envconfig"})},
	{doc: "internal/handlers/reconcile: must not import a state backend or anything under cmd (directly: the safety gate it calls keeps its brakes in jsstate)", pkgs: []string{"internal/handlers/reconcile"}, forbid: cat(backends, []string{"cmd/..."}), direct: true},
	{doc: "internal/handlers/receiver: must not touch Sentry or the state backends", pkgs: []string{"internal/handlers/receiver"}, forbid: cat(sentryPkgs, backends, redisLib)},
	{doc: "internal/alert: must not import the handlers, NATS, Redis or cmd/*", pkgs: []string{"internal/alert"}, forbid: cat(natsLibs, redisLib, []string{"internal/handlers/...", "cmd/..."})},
	{doc: "internal/roster: must not import the Sentry client or the handlers", pkgs: []string{"internal/roster"}, forbid: cat(sentryPkgs, []string{"internal/handlers/..."})},
	{doc: "internal/events: must not import webhook sources, the Sentry client or the state backends", pkgs: []string{"internal/events"}, forbid: cat(sentryPkgs, backends, []string{"internal/handlers/sources/...", "internal/handlers/providers/..."})},
	{doc: "internal/state/redisstate: must not import other state backends (memstate, jsstate) or application packages", pkgs: []string{"internal/state/redisstate"}, forbid: cat(appLayers, []string{"internal/state/memstate", "internal/state/jsstate"})},
	{doc: "internal/state/statetest: imports only package state (and events, whose Person a record holds) and test helpers, never a backend", pkgs: []string{"internal/state/statetest"}, forbid: []string{"internal/...", "cmd/..."}, allow: []string{"internal/state", "internal/events"}},
	{doc: "internal/state/jsstate: must not import Redis or the coordination backends", pkgs: []string{"internal/state/jsstate"}, forbid: cat(redisLib, []string{"internal/state/redisstate", "internal/state/memstate"})},
	{doc: "internal/state/memstate: must not import other state backends or any I/O client, and must not import application packages", pkgs: []string{"internal/state/memstate"}, forbid: cat(natsLibs, redisLib, appLayers, sentryPkgs, []string{"internal/state/redisstate", "internal/state/jsstate"})},
	{doc: "internal/state: must not import any backend, any I/O client (go-redis, nats) or application packages (handlers, sentry)", pkgs: []string{"internal/state"}, forbid: cat(natsLibs, redisLib, appLayers, sentryPkgs, backends)},
	{doc: "internal/signature: must not import the receiver, NATS or any provider's payload types", pkgs: []string{"internal/signature"}, forbid: cat(natsLibs, []string{"internal/handlers/...", "internal/events"})},
	{doc: "internal/sentry/sentrytest: must not import internal/sentry (or any other project package); non-test code uses only the standard library and openapicheck",
		pkgs: []string{"internal/sentry/sentrytest"}, forbid: []string{"internal/...", "cmd/..."}, allow: []string{"internal/sentry/sentrytest/openapicheck"}},
	{doc: "internal/sentry: must not import the daemon's other packages (events, handlers, state) nor internal/sentry/sentrytest outside tests", pkgs: []string{"internal/sentry"}, forbid: []string{"internal/events", "internal/handlers/...", "internal/state/...", "internal/sentry/sentrytest/...", "internal/app/...", "cmd/..."}},
	{doc: "internal/embednats: must not know about streams or events", pkgs: []string{"internal/embednats"}, forbid: []string{"internal/events"}},
	{doc: "internal/policy: must not call Sentry", pkgs: []string{"internal/policy"}, forbid: cat(sentryPkgs, natsLibs, redisLib)},
	{doc: "internal/report: reads records only; it does no I/O of its own", pkgs: []string{"internal/report"}, forbid: cat(natsLibs, redisLib, sentryPkgs, backends)},
}

// testOnly lists helper packages for tests: no non-test code outside other
// helpers may import them (safetytest: "nothing imports safetytest outside
// tests"; the sandbox is the exception cmd/jml's `jml sandbox` and `jml run`
// serve, as sentrytest's doc.go says).
var testOnly = []helper{
	{"internal/safety/safetytest", nil},
	{"internal/state/statetest", nil},
	{"internal/embednats/natstest", nil},
	{"internal/handlers/sources/sourcestest", nil},
	{"internal/sentry/sentrytest/...", []string{"cmd/jml", "internal/sentry/sentrytest/..."}},
}

// helper is a test helper package and the non-test packages that may import it.
type helper struct {
	pkg     string
	allowed []string // non-test importers allowed
}

const providersDir = "internal/handlers/providers/"

// providerRules are the rules of the provider packages' doc.go files, for
// every package directly under internal/handlers/providers (so a new provider
// is bound without being listed here): a provider must not publish, touch
// Sentry, read configuration or import the registry, another provider or the
// receiver; its API simulator (<name>/<name>test, when it has one) never
// imports the provider's packages or resolve, and only tests import it. The
// simulators' shared plumbing, resolvetest, is imported by the simulators
// alone.
func providerRules(pkgs []pkg) ([]rule, []helper) {
	var names []string
	exists := map[string]bool{}
	for _, p := range pkgs {
		rel, _ := strings.CutPrefix(p.ImportPath, module+"/")
		exists[rel] = true
		if n, ok := strings.CutPrefix(rel, providersDir); ok && !strings.Contains(n, "/") {
			names = append(names, n)
		}
	}
	var rules []rule
	var sims []string
	for _, n := range names {
		home := providersDir + n
		forbid := cat(natsLibs, sentryPkgs, []string{"cmd/...", "github.com/kelseyhightower/envconfig", "internal/handlers/receiver", "internal/handlers/providers"})
		for _, o := range names {
			if o != n {
				forbid = append(forbid, providersDir+o+"/...")
			}
		}
		rules = append(rules, rule{doc: home + ": must not publish, touch Sentry or read configuration, and must not import the registry, another provider's package or the receiver",
			pkgs: []string{home + "/..."}, forbid: forbid})
		if sim := home + "/" + n + "test"; exists[sim] {
			sims = append(sims, sim)
			rules = append(rules, rule{doc: sim + ": never imports package " + n + " (or its other subpackages) or resolve",
				pkgs: []string{sim}, forbid: []string{home + "/...", "internal/handlers/resolve"}, allow: []string{sim}})
		}
	}
	helpers := []helper{{"internal/handlers/resolve/resolvetest", sims}}
	for _, s := range sims {
		helpers = append(helpers, helper{s, nil})
	}
	return rules, helpers
}

func match(pattern, path string) bool {
	full := pattern
	if !strings.Contains(strings.SplitN(pattern, "/", 2)[0], ".") {
		full = module + "/" + pattern
	}
	if p, ok := strings.CutSuffix(full, "/..."); ok {
		return path == p || strings.HasPrefix(path, p+"/")
	}
	return path == full
}

func matchAny(patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(p, path) })
}

func listModule(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Deps,TestImports,XTestImports", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	if len(pkgs) < 30 {
		t.Fatalf("go list found %d packages; want the whole module", len(pkgs))
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	pkgs := listModule(t)
	provRules, provHelpers := providerRules(pkgs)
	if len(provHelpers) < 8 {
		t.Fatalf("%d provider API simulators found under %s; want okta's and the six HR systems'", len(provHelpers)-1, providersDir)
	}
	for _, r := range slices.Concat(rules, provRules) {
		matched := 0
		for _, p := range pkgs {
			if !matchAny(r.pkgs, p.ImportPath) {
				continue
			}
			matched++
			// The module's own packages count through any path; a library
			// counts where the package imports it itself (a rule on "NATS"
			// means using it, not depending on events, which publishes).
			deps := slices.Clone(p.Imports)
			if !r.direct {
				for _, d := range p.Deps {
					if strings.HasPrefix(d, module+"/") {
						deps = append(deps, d)
					}
				}
			}
			slices.Sort(deps)
			for _, d := range slices.Compact(deps) {
				if matchAny(r.forbid, d) && !matchAny(r.allow, d) {
					t.Errorf("%s imports %s (non-test code); %s", p.ImportPath, d, r.doc)
				}
			}
			if r.tests {
				for _, d := range slices.Concat(p.TestImports, p.XTestImports) {
					if matchAny(r.forbid, d) && !matchAny(r.allow, d) {
						t.Errorf("%s's tests import %s; %s", p.ImportPath, d, r.doc)
					}
				}
			}
		}
		if matched == 0 {
			t.Errorf("rule %q matches no package (renamed?)", r.doc)
		}
	}
	for _, h := range slices.Concat(testOnly, provHelpers) {
		for _, p := range pkgs {
			if matchAny([]string{h.pkg}, p.ImportPath) || matchAny(h.allowed, p.ImportPath) {
				continue
			}
			for _, d := range p.Imports {
				if match(h.pkg, d) {
					t.Errorf("%s imports the test helper %s outside its tests", p.ImportPath, d)
				}
			}
		}
	}
}

// The matcher the rules rely on: a broken one would pass every rule.
func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, path string
		want          bool
	}{
		{"internal/sentry", module + "/internal/sentry", true},
		{"internal/sentry", module + "/internal/sentry/sentrytest", false},
		{"internal/sentry/...", module + "/internal/sentry/sentrytest", true},
		{"internal/sentry/...", module + "/internal/sentryx", false},
		{"cmd/...", module + "/cmd/internal/config", true},
		{"github.com/nats-io/nats.go/...", "github.com/nats-io/nats.go/jetstream", true},
		{"github.com/redis/go-redis/...", "github.com/redis/go-redis/v9", true},
		{"github.com/kelseyhightower/envconfig", "github.com/kelseyhightower/envconfig", true},
	}
	for _, c := range cases {
		if got := match(c.pattern, c.path); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pattern, c.path, got, c.want)
		}
	}
}
