package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest/openapicheck"
)

// envSpecReport is test-only: when it names a file, every sandbox this
// process starts (jml run without JML_SENTRY_*, jml sandbox) checks its API
// traffic against Sentry's published OpenAPI schema and appends each
// violation to that file as a JSON line. The tests of this package set it in
// TestMain and fail when the file is not empty. It needs the source tree
// (the schema lives in testdata/), so it fails closed elsewhere.
const envSpecReport = "JML_SANDBOX_OPENAPI_REPORT"

// withSpecCheck adds the OpenAPI check to o when envSpecReport is set.
func withSpecCheck(o *sentrytest.Options) error {
	file := os.Getenv(envSpecReport)
	if file == "" {
		return nil
	}
	chk, err := openapicheck.LoadDefault()
	if err != nil {
		return fmt.Errorf("%s: %w", envSpecReport, err)
	}
	o.Observer = sentrytest.Observers(o.Observer, sentrytest.SpecObserver(chk, specReporter(file)))
	return nil
}

// specReporter appends violations to file, one JSON object a line; an
// append that fails is written to stderr, never dropped silently.
func specReporter(file string) func(openapicheck.Violation) {
	var mu sync.Mutex
	return func(v openapicheck.Violation) {
		line, err := json.Marshal(v)
		if err == nil {
			mu.Lock()
			err = appendLine(file, append(line, '\n'))
			mu.Unlock()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v: %s\n", envSpecReport, err, v)
		}
	}
}

func appendLine(file string, line []byte) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
