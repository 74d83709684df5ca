// Command gensubset regenerates testdata/sentry/sentry-openapi-subset.json:
// the operations the Sentry sandbox serves (internal/sentry/sentrytest/routes.go),
// copied verbatim from Sentry's published openapi-derefed.json
// (github.com/getsentry/sentry-api-schema, FSL-1.1-Apache-2.0).
//
// Run it from the module root (it lives under testdata/, so `go test ./...`
// and `go vet ./...` never see it):
//
//	git -C <clone of getsentry/sentry-api-schema> show HEAD:openapi-derefed.json > /tmp/openapi-derefed.json
//	go run ./testdata/sentry/gensubset -schema /tmp/openapi-derefed.json \
//	    -commit "$(git -C <clone> rev-parse HEAD)" \
//	    -version "$(git -C <clone> show HEAD:package.json | sed -n 's/.*"version": "\(.*\)".*/\1/p')"
//
// The output is deterministic (keys sorted, one-space indent). An operation
// the sandbox routes but the schema lacks is listed on stderr, not invented.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

func main() {
	schema := flag.String("schema", "", "path to Sentry's openapi-derefed.json (required)")
	routes := flag.String("routes", "internal/sentry/sentrytest/routes.go", "the sandbox's route table")
	commit := flag.String("commit", "", "sentry-api-schema commit the schema came from (required)")
	version := flag.String("version", "", "package.json version of that commit")
	out := flag.String("o", "testdata/sentry/sentry-openapi-subset.json", "output file")
	flag.Parse()
	if *schema == "" || *commit == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*schema, *routes, *commit, *version, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gensubset:", err)
		os.Exit(1)
	}
}

var (
	constRE  = regexp.MustCompile(`(?m)^\s*(Pattern\w+)\s*=\s*"([^"]+)"`)
	handleRE = regexp.MustCompile(`s\.handle\("([A-Z]+)",\s*(Pattern\w+)`)
)

// served reads routes.go: template → lower-case methods.
func served(routesFile string) (map[string][]string, error) {
	src, err := os.ReadFile(routesFile)
	if err != nil {
		return nil, err
	}
	consts := map[string]string{}
	for _, m := range constRE.FindAllStringSubmatch(string(src), -1) {
		consts[m[1]] = m[2]
	}
	out := map[string][]string{}
	for _, m := range handleRE.FindAllStringSubmatch(string(src), -1) {
		tmpl, ok := consts[m[2]]
		if !ok {
			return nil, fmt.Errorf("%s: route uses unknown constant %s", routesFile, m[2])
		}
		out[tmpl] = append(out[tmpl], strings.ToLower(m[1]))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no s.handle(...) routes found", routesFile)
	}
	return out, nil
}

func run(schemaFile, routesFile, commit, version, outFile string) error {
	routes, err := served(routesFile)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(schemaFile)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("%s: %w", schemaFile, err)
	}
	paths, _ := doc["paths"].(map[string]any)
	if paths == nil {
		return fmt.Errorf("%s: no paths", schemaFile)
	}
	subset := map[string]any{}
	var missing []string
	for tmpl, methods := range routes {
		item, _ := paths[tmpl].(map[string]any)
		for _, m := range methods {
			op, ok := item[m]
			if !ok {
				missing = append(missing, strings.ToUpper(m)+" "+tmpl)
				continue
			}
			dst, _ := subset[tmpl].(map[string]any)
			if dst == nil {
				dst = map[string]any{}
				// path-level fields (parameters, summary) come along
				for k, v := range item {
					switch k {
					case "get", "put", "post", "delete", "patch", "head", "options", "trace":
					default:
						dst[k] = v
					}
				}
				subset[tmpl] = dst
			}
			dst[m] = op
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		fmt.Fprintln(os.Stderr, "not in the published schema (not copied):", m)
	}
	comps, _ := doc["components"].(map[string]any)
	src := fmt.Sprintf("getsentry/sentry-api-schema openapi-derefed.json @ %s", commit)
	if version != "" {
		src += fmt.Sprintf(" (package @sentry/api %s)", version)
	}
	src += "; license FSL-1.1-Apache-2.0 (LICENSE.md of that repository); only the operations internal/sentry/sentrytest/routes.go serves, copied unchanged; regenerate with go run ./testdata/sentry/gensubset"
	info, _ := doc["info"].(map[string]any)
	out := map[string]any{
		"openapi": doc["openapi"],
		"info": map[string]any{
			"title":    "Sentry API (subset the sandbox serves)",
			"version":  info["version"],
			"x-source": src,
		},
		"servers":    doc["servers"],
		"paths":      subset,
		"components": map[string]any{"securitySchemes": comps["securitySchemes"]},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	return os.WriteFile(outFile, buf.Bytes(), 0o644)
}
