package sentrytest

import (
	"context"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest/openapicheck"
)

// SpecObserver returns an Observer that checks every exchange against
// Sentry's published OpenAPI schema and hands each violation to report.
// Responses a Fault produced are not checked (they are injected on purpose).
func SpecObserver(chk *openapicheck.Checker, report func(openapicheck.Violation)) Observer {
	return ObserverFunc(func(x Exchange) {
		if x.Injected {
			return
		}
		ctx := context.WithoutCancel(x.Request.Context())
		for _, v := range chk.Check(ctx, openapicheck.Exchange{Method: x.Request.Method, Template: x.Pattern, Request: x.Request,
			RequestBody: x.RequestBody, Status: x.Status, Header: x.Header, Body: x.Body}) {
			report(v)
		}
	})
}

// Observers returns an Observer that calls each non-nil one in turn.
func Observers(obs ...Observer) Observer {
	var list []Observer
	for _, o := range obs {
		if o != nil {
			list = append(list, o)
		}
	}
	return ObserverFunc(func(x Exchange) {
		for _, o := range list {
			o.Observe(x)
		}
	})
}

// checkSpec makes every API exchange of a test's sandbox pass the OpenAPI
// check; the test fails at cleanup, after the server has closed, with each
// violation grouped and counted.
func checkSpec(tb testing.TB, opts *Options) {
	tb.Helper()
	chk, err := openapicheck.LoadDefault()
	if err != nil {
		tb.Fatalf("sentrytest: the OpenAPI check cannot start: %v", err)
	}
	col := openapicheck.NewCollector()
	opts.Observer = Observers(opts.Observer, SpecObserver(chk, func(v openapicheck.Violation) { col.Add(v) }))
	tb.Cleanup(func() {
		if r := col.Report(); r != "" {
			tb.Errorf("sentrytest: %d API exchange(s) disagree with Sentry's published OpenAPI schema "+
				"(known exceptions: %s):\n%s", col.Len(), openapicheck.AllowlistFile, r)
		}
	})
}
