package openapicheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/dlclark/regexp2"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// Files of the schema subset and the allowlist, relative to the module root.
const (
	SpecFile      = "testdata/sentry/sentry-openapi-subset.json"
	AllowlistFile = "testdata/sentry/openapi-allowlist.txt"
)

// Exchange is one request and its response.
type Exchange struct {
	Method      string
	Template    string        // the schema's path template, e.g. /api/0/teams/{organization_id_or_slug}/{team_id_or_slug}/
	Request     *http.Request // path values (Request.PathValue) name the template's parameters
	RequestBody []byte
	Status      int
	Header      http.Header
	Body        []byte
}

// Violation is one disagreement between an exchange and the schema.
type Violation struct {
	Method   string
	Template string
	Status   int
	// Where is "operation" (not documented), "status" (not documented),
	// "response" or "request".
	Where   string
	Pointer string // JSON pointer into the body ("" for the whole body, "header X" or "query X")
	Reason  string
	URI     string // the request's URI, for finding the test that sent it
	Body    string // the offending body, truncated
}

// Key groups like violations: everything but the URI and the body.
func (v Violation) Key() string {
	k := fmt.Sprintf("%s %s %d %s", v.Method, v.Template, v.Status, v.Where)
	if v.Pointer != "" {
		k += ":" + v.Pointer
	}
	return k + ": " + v.Reason
}

func (v Violation) String() string {
	s := v.Key() + " (" + v.URI + ")"
	if v.Body != "" {
		s += " body: " + v.Body
	}
	return s
}

// Checker validates exchanges against the schema. It is safe for concurrent use.
type Checker struct {
	doc   *openapi3.T
	rules []rule
	opts  *openapi3filter.Options

	mu   sync.Mutex
	used map[int]bool
}

type rule struct {
	line                     string
	method, template, status string // "*" = any
	where                    string // "" (status or operation), "response" or "request"
	pointer                  []string
}

// DefaultFiles finds SpecFile and AllowlistFile in the source tree this
// package was built from, or above the working directory.
func DefaultFiles() (spec, allowlist string, err error) {
	var roots []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		roots = append(roots, filepath.Join(filepath.Dir(file), "..", "..", "..", ".."))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			roots = append(roots, d)
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, r := range roots {
		s, a := filepath.Join(r, SpecFile), filepath.Join(r, AllowlistFile)
		if _, err := os.Stat(s); err == nil {
			return s, a, nil
		}
	}
	return "", "", fmt.Errorf("openapicheck: %s not found in the source tree or above the working directory", SpecFile)
}

// defaultDoc parses the default schema once per process: parsing costs
// about 45 ms and 28 MB, and every sandbox a test starts needs it. The
// document is never written after loading (kin-openapi validates against a
// shared document concurrently), so this is a lazily computed constant, not
// mutable state.
var defaultDoc = sync.OnceValues(func() (*openapi3.T, error) {
	s, _, err := DefaultFiles()
	if err != nil {
		return nil, err
	}
	return loadDoc(s)
})

// LoadDefault loads the files DefaultFiles finds (the schema is parsed once
// per process; the allowlist on every call, so each Checker counts its own
// UnusedRules).
func LoadDefault() (*Checker, error) {
	doc, err := defaultDoc()
	if err != nil {
		return nil, err
	}
	_, a, err := DefaultFiles()
	if err != nil {
		return nil, err
	}
	return newChecker(doc, a)
}

// Load reads the schema and the allowlist.
func Load(specFile, allowlistFile string) (*Checker, error) {
	doc, err := loadDoc(specFile)
	if err != nil {
		return nil, err
	}
	return newChecker(doc, allowlistFile)
}

func loadDoc(specFile string) (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(specFile)
	if err != nil {
		return nil, fmt.Errorf("openapicheck: load %s: %w", specFile, err)
	}
	return doc, nil
}

func newChecker(doc *openapi3.T, allowlistFile string) (*Checker, error) {
	rules, err := readAllowlist(allowlistFile)
	if err != nil {
		return nil, err
	}
	return &Checker{doc: doc, rules: rules, used: map[int]bool{}, opts: &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc, // tests send bad credentials on purpose
		RegexCompiler:         compileECMA,
	}}, nil
}

// ValidateSpec checks the schema document itself (with the same regex engine).
func (c *Checker) ValidateSpec(ctx context.Context) error {
	// Examples are documentation (Sentry's project-detail example has nulls its own
	// schema forbids); only the schemas themselves must be valid.
	if err := c.doc.Validate(ctx, openapi3.SetRegexCompiler(compileECMA), openapi3.DisableExamplesValidation()); err != nil {
		return fmt.Errorf("openapicheck: schema: %w", err)
	}
	return nil
}

// Documented reports whether the schema has the operation.
func (c *Checker) Documented(method, template string) bool {
	item := c.doc.Paths.Value(template)
	return item != nil && item.GetOperation(method) != nil
}

// Operations lists "METHOD TEMPLATE STATUS" for every documented response.
func (c *Checker) Operations() []string {
	var out []string
	for _, tmpl := range c.doc.Paths.InMatchingOrder() {
		for method, op := range c.doc.Paths.Value(tmpl).Operations() {
			for code := range op.Responses.Map() {
				out = append(out, method+" "+tmpl+" "+code)
			}
		}
	}
	sort.Strings(out)
	return out
}

// goRE compiles what Go's regexp can; regexp2 (ECMAScript mode) takes
// look-arounds and the rest.
func compileECMA(expr string) (openapi3.RegexMatcher, error) {
	if re, err := regexp.Compile(expr); err == nil {
		return re, nil
	}
	re, err := regexp2.Compile(expr, regexp2.ECMAScript)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", expr, err)
	}
	return ecmaMatcher{re}, nil
}

type ecmaMatcher struct{ re *regexp2.Regexp }

// MatchString fails closed: a match error (a timeout) is no match.
func (m ecmaMatcher) MatchString(s string) bool {
	ok, err := m.re.MatchString(s)
	return err == nil && ok
}

var paramRE = regexp.MustCompile(`\{([A-Za-z0-9_]+)\}`)

// Check validates one exchange and returns the violations the allowlist
// does not excuse.
func (c *Checker) Check(ctx context.Context, x Exchange) []Violation {
	item := c.doc.Paths.Value(x.Template)
	if item == nil {
		return nil // a path Sentry does not document at all (see the package doc)
	}
	base := Violation{Method: x.Method, Template: x.Template, Status: x.Status, URI: x.Request.URL.RequestURI()}
	op := item.GetOperation(x.Method)
	if op == nil {
		if c.allowed(x, "", nil) {
			return nil
		}
		v := base
		v.Where, v.Reason = "operation", "the schema does not document this method on this path"
		return []Violation{v}
	}
	params := map[string]string{}
	for _, m := range paramRE.FindAllStringSubmatch(x.Template, -1) {
		params[m[1]] = x.Request.PathValue(m[1])
	}
	route := &routers.Route{Spec: c.doc, Path: x.Template, PathItem: item, Method: x.Method, Operation: op}
	req := x.Request.Clone(ctx)
	if scimJSON(req.Header.Get("Content-Type")) && op.RequestBody != nil && op.RequestBody.Value != nil &&
		op.RequestBody.Value.Content.Get("application/scim+json") == nil {
		// RFC 7644 §3.1's media type: Sentry's SCIM endpoints parse it as
		// JSON (SCIMClientNegotiation in src/sentry/scim/endpoints/utils.py)
		// while the schema lists only application/json. Validate the body
		// as what it is.
		req.Header.Set("Content-Type", "application/json")
	}
	req.Body = io.NopCloser(bytes.NewReader(x.RequestBody))
	req.ContentLength = int64(len(x.RequestBody))
	reqIn := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: c.opts}

	var out []Violation
	if op.Responses.Status(x.Status) == nil && op.Responses.Default() == nil {
		if !c.allowed(x, "", nil) {
			v := base
			v.Where, v.Reason, v.Body = "status", "the schema does not document this status", clip(x.Body)
			out = append(out, v)
		}
	} else {
		in := &openapi3filter.ResponseValidationInput{RequestValidationInput: reqIn, Status: x.Status, Header: x.Header, Options: c.opts}
		in.SetBodyBytes(x.Body)
		for _, v := range c.flatten(base, "response", openapi3filter.ValidateResponse(ctx, in)) {
			if !c.allowed(x, "response", splitPointer(v.Pointer)) {
				v.Body = clip(x.Body)
				out = append(out, v)
			}
		}
	}
	if x.Status >= 200 && x.Status < 300 {
		for _, v := range c.flatten(base, "request", openapi3filter.ValidateRequest(ctx, reqIn)) {
			if !c.allowed(x, "request", splitPointer(v.Pointer)) {
				v.Body = clip(x.RequestBody)
				out = append(out, v)
			}
		}
	}
	return out
}

// flatten turns kin-openapi's error tree into one Violation per schema error.
func (c *Checker) flatten(base Violation, where string, err error) []Violation {
	if err == nil {
		return nil
	}
	base.Where = where
	var out []Violation
	var walk func(prefix string, err error)
	walk = func(prefix string, err error) {
		var me openapi3.MultiError
		var se *openapi3.SchemaError
		var re *openapi3filter.RequestError
		var pe *openapi3filter.ResponseError
		switch {
		case errors.As(err, &me) && !isSchemaErr(err):
			for _, e := range me {
				walk(prefix, e)
			}
		case errors.As(err, &se):
			v := base
			v.Pointer = prefix + "/" + strings.Join(se.JSONPointer(), "/")
			if prefix != "" && len(se.JSONPointer()) == 0 {
				v.Pointer = prefix
			}
			v.Reason = se.Reason
			out = append(out, v)
		case errors.As(err, &re):
			p := prefix
			if re.Parameter != nil {
				p = re.Parameter.In + " " + re.Parameter.Name
			}
			if re.Err != nil && re.Parameter == nil && re.RequestBody != nil {
				walk(p, re.Err)
				return
			}
			if re.Err != nil {
				var inner *openapi3.SchemaError
				var innerM openapi3.MultiError
				if errors.As(re.Err, &inner) || errors.As(re.Err, &innerM) {
					walk(p, re.Err)
					return
				}
			}
			v := base
			v.Pointer, v.Reason = p, re.Error()
			out = append(out, v)
		case errors.As(err, &pe):
			if pe.Err != nil {
				var inner *openapi3.SchemaError
				var innerM openapi3.MultiError
				if errors.As(pe.Err, &inner) || errors.As(pe.Err, &innerM) {
					walk(prefix, pe.Err)
					return
				}
			}
			v := base
			v.Pointer, v.Reason = prefix, pe.Error()
			out = append(out, v)
		default:
			v := base
			v.Pointer, v.Reason = prefix, err.Error()
			out = append(out, v)
		}
	}
	walk("", err)
	return out
}

func scimJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/scim+json")
}

func isSchemaErr(err error) bool {
	_, ok := err.(*openapi3.SchemaError)
	return ok
}

func splitPointer(p string) []string {
	if !strings.HasPrefix(p, "/") {
		return []string{p}
	}
	return strings.Split(p[1:], "/")
}

func clip(b []byte) string {
	const n = 300
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// allowed reports whether a rule excuses the exchange; where "" asks about
// an undocumented operation or status.
func (c *Checker) allowed(x Exchange, where string, pointer []string) bool {
	status := strconv.Itoa(x.Status)
	best, bestScore := -1, -1
	for i, r := range c.rules {
		if r.where != where || !match(r.method, x.Method) || !match(r.template, x.Template) || !match(r.status, status) {
			continue
		}
		if where != "" && !pointerMatch(r.pointer, pointer) {
			continue
		}
		// the most specific line wins, so each line's use is visible
		score := 0
		for _, f := range []string{r.method, r.template, r.status} {
			if f != "*" {
				score++
			}
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return false
	}
	c.mu.Lock()
	c.used[best] = true
	c.mu.Unlock()
	return true
}

func match(pat, s string) bool { return pat == "*" || pat == s }

func pointerMatch(pat, p []string) bool {
	for i, seg := range pat {
		if seg == "**" && i == len(pat)-1 {
			return true
		}
		if i >= len(p) || (seg != "*" && seg != p[i]) {
			return false
		}
	}
	return len(pat) == len(p)
}

// UnusedRules lists the allowlist lines no Check has used so far.
func (c *Checker) UnusedRules() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for i, r := range c.rules {
		if !c.used[i] {
			out = append(out, r.line)
		}
	}
	return out
}

func readAllowlist(file string) ([]rule, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("openapicheck: %w", err)
	}
	defer f.Close()
	var rules []rule
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		code, reason, _ := strings.Cut(line, "#")
		fields := strings.Fields(code)
		if len(fields) == 0 {
			continue
		}
		if (len(fields) != 3 && len(fields) != 4) || strings.TrimSpace(reason) == "" {
			return nil, fmt.Errorf("openapicheck: %s:%d: want METHOD TEMPLATE STATUS [response:/ptr|request:/ptr] # reason, got %q", file, n, line)
		}
		r := rule{line: strings.TrimSpace(line), method: fields[0], template: fields[1], status: fields[2]}
		if len(fields) == 4 {
			where, ptr, ok := strings.Cut(fields[3], ":")
			if !ok || (where != "response" && where != "request") || !strings.HasPrefix(ptr, "/") {
				return nil, fmt.Errorf("openapicheck: %s:%d: the fourth field is response:/pointer or request:/pointer, got %q", file, n, fields[3])
			}
			r.where, r.pointer = where, splitPointer(ptr)
		}
		rules = append(rules, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("openapicheck: %s: %w", file, err)
	}
	return rules, nil
}

// Collector gathers violations and groups them for a report. It is safe
// for concurrent use.
type Collector struct {
	mu     sync.Mutex
	counts map[string]int
	first  map[string]Violation
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector {
	return &Collector{counts: map[string]int{}, first: map[string]Violation{}}
}

// Add records violations.
func (c *Collector) Add(vs ...Violation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range vs {
		k := v.Key()
		if c.counts[k] == 0 {
			c.first[k] = v
		}
		c.counts[k]++
	}
}

// Len is the number of violations recorded.
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.counts {
		n += k
	}
	return n
}

// Report lists each group once with its count and first example; "" when
// nothing was recorded.
func (c *Collector) Report() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.counts))
	for k := range c.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%4d× %s\n", c.counts[k], c.first[k])
	}
	return b.String()
}
