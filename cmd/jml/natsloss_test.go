package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// TestRunTightensDataDirEveryStart: an existing data dir readable by others
// is tightened to 0700 by `jml run` on every start, also when the admin
// token is configured (nothing is generated into the dir).
func TestRunTightensDataDirEveryStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := config.Common{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", SandboxToken: "sandbox",
		DataDir: dir, LogLevel: "error", MaxBodyBytes: 1 << 20, StreamReplicas: 1, AdminToken: strings.Repeat("t", 40)}
	for start := 1; start <= 2; start++ {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		sys, err := startAll(context.Background(), cfg, runOptions{stdout: io.Discard, logs: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		sys.Close()
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("start %d: data dir mode %v (%v), want 0700", start, fi.Mode().Perm(), err)
		}
	}
}

// TestRunHealthzFailsWhenNATSClosesForGood: on `jml run`, a connection the
// embedded server closes (a protocol line over its limit, as an unbounded id
// once produced) makes /healthz fail on the receiver and the admin listener,
// and the process reports the failure so that it shuts down.
func TestRunHealthzFailsWhenNATSClosesForGood(t *testing.T) {
	sys := mustRunMain(t, "")
	for _, addr := range []string{sys.httpAddr, sys.adminAddr} {
		if code := probe(t, "http://"+addr+"/healthz"); code != http.StatusOK {
			t.Fatalf("%s/healthz: %d before", addr, code)
		}
	}
	_ = sys.nc.Publish("jml.events."+strings.Repeat("x", 5000), nil)
	_ = sys.nc.Flush()
	select {
	case err := <-sys.failed:
		if !strings.Contains(err.Error(), "nats") {
			t.Fatalf("failure: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the closed connection was not reported")
	}
	for _, addr := range []string{sys.httpAddr, sys.adminAddr} {
		if code := probe(t, "http://"+addr+"/healthz"); code != http.StatusServiceUnavailable {
			t.Fatalf("%s/healthz: %d after the connection closed, want 503", addr, code)
		}
	}
}

func probe(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRosterImportCLIStreamsTheFile: `jml roster import` validates the file
// row by row and streams it to the admin API, which imports it; an invalid
// file is refused locally with its line and sends nothing.
func TestRosterImportCLIStreamsTheFile(t *testing.T) {
	sys := mustRunMain(t, "")
	t.Setenv("JML_ADMIN_ADDR", sys.adminAddr)
	t.Setenv("JML_DATA_DIR", sys.cfg.DataDir)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("id,email,name,status,department,title,groups,manager_email\nE-1,a@acme.test,A,active,,,,\nE-2,b@acme.test,B,gone,,,,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	js, err := jetstream.New(sys.nc)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := jsstate.Open(ctx, js, jsstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := dispatch(ctx, []string{"roster", "import", bad, "--as-of", "2026-01-01T00:00:00Z"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("invalid file: %v", err)
	}
	if _, err := recs.Directory.Get(ctx, "id:E-1"); err == nil {
		t.Fatal("an invalid file imported a row")
	}
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`[{"id":"E-1","email":"a@acme.test","status":"active"},
{"id":"E-2","email":"b@acme.test","status":"terminated"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := dispatch(ctx, []string{"roster", "import", good, "--as-of", "2026-01-01T00:00:00Z"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "2 rows, 2 applied") {
		t.Fatalf("output: %s", out.String())
	}
	if rec, err := recs.Directory.Get(ctx, "id:E-2"); err != nil || rec.Person.Status != "terminated" {
		t.Fatalf("E-2: %+v %v", rec.Person, err)
	}
}
