package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
)

// TestSpecCheckReportsWrongResponse: with JML_SANDBOX_OPENAPI_REPORT set, a
// sandbox built the way jml run and jml sandbox build it sends real traffic
// without a report line, and a response that breaks Sentry's schema is
// appended to the report, which TestMain reads back.
func TestSpecCheckReportsWrongResponse(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report.jsonl")
	t.Setenv(envSpecReport, report)
	opts := sentrytest.Options{RateLimit: -1}
	if err := withSpecCheck(&opts); err != nil {
		t.Fatal(err)
	}
	sb := sentrytest.New(opts)
	hs := httptest.NewServer(sb)
	defer hs.Close()
	req, _ := http.NewRequest("GET", hs.URL+"/api/0/organizations/acme/teams/", nil)
	req.Header.Set("Authorization", "Bearer sandbox")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if col, err := readSpecReport(report); err == nil && col.Len() != 0 {
		t.Fatalf("real traffic reported: %s", col.Report())
	}

	// a teams list whose first team has no slug
	r := httptest.NewRequest("GET", "/api/0/organizations/acme/teams/", nil)
	r.SetPathValue("organization_id_or_slug", "acme")
	opts.Observer.Observe(sentrytest.Exchange{Pattern: sentrytest.PatternTeams, Request: r, Status: 200,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`[{"id":"1","name":"x"}]`)})
	col, err := readSpecReport(report)
	if err != nil {
		t.Fatal(err)
	}
	if col.Len() == 0 || !strings.Contains(col.Report(), "response:/0/slug") {
		t.Fatalf("wrong response not reported: %q", col.Report())
	}
}
