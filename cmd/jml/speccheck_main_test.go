package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest/openapicheck"
)

// TestMain turns the OpenAPI check on for every sandbox these tests start
// in-process through jml run or jml sandbox (and for child processes, which
// inherit the variable), and fails the run when any exchange broke Sentry's
// published schema. Sandboxes built with sentrytest.NewServer check
// themselves per test.
func TestMain(m *testing.M) {
	f, err := os.CreateTemp("", "jml-openapi-*.jsonl")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	f.Close()
	os.Setenv(envSpecReport, f.Name())
	code := m.Run()
	col, err := readSpecReport(f.Name())
	os.Remove(f.Name())
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "FAIL: %s: %v\n", envSpecReport, err)
		code = max(code, 1)
	case col.Len() > 0:
		fmt.Fprintf(os.Stderr, "FAIL: %d sandbox API exchange(s) disagree with Sentry's published OpenAPI schema (known exceptions: %s):\n%s",
			col.Len(), openapicheck.AllowlistFile, col.Report())
		code = max(code, 1)
	}
	os.Exit(code)
}

func readSpecReport(file string) (*openapicheck.Collector, error) {
	col := openapicheck.NewCollector()
	f, err := os.Open(file)
	if err != nil {
		return col, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v openapicheck.Violation
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return col, fmt.Errorf("%s: %w", file, err)
		}
		col.Add(v)
	}
	return col, sc.Err()
}
