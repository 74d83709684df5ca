package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/embednats"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// TestSplitProcesses runs cmd/webhook and cmd/worker as separate processes against
// an external NATS, the shared Redis and a sandbox, and sends one signed leaver.
func TestSplitProcesses(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{"webhook", "worker"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, name), "../"+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	ns, err := embednats.Start(embednats.Options{StoreDir: t.TempDir(), Listen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	const token = "sntryu_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
	sb := sentrytest.NewServer(t, sentrytest.Options{Token: token})
	const secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	httpAddr := freeAddr(t)

	// Traces default to otlp in the production processes (the spec); nothing listens here.
	common := []string{"JML_NATS_URL=" + ns.ClientURL(), "JML_LOG_LEVEL=debug", "PATH=" + os.Getenv("PATH"), "OTEL_TRACES_EXPORTER=none"}
	start := func(name string, env ...string) {
		cmd := exec.Command(filepath.Join(bin, name))
		cmd.Env = append(append([]string{}, common...), env...)
		var logs strings.Builder
		cmd.Stderr = &syncWriter{w: &logs}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Errorf("%s did not stop within 20 s of SIGINT", name)
			}
			if t.Failed() {
				t.Logf("%s logs:\n%s", name, logs.String())
			}
		})
	}
	webhookAdmin := freeAddr(t)
	start("webhook", "JML_HTTP_ADDR="+httpAddr, "JML_ADMIN_ADDR="+webhookAdmin, "JML_SOURCE_GENERIC_SECRET="+secret)
	workerAdmin, workerData := freeAddr(t), t.TempDir()
	start("worker", "JML_ADMIN_ADDR="+workerAdmin, "JML_DATA_DIR="+workerData, "JML_REDIS_URL="+testRedisURL(), "JML_REDIS_PREFIX=jmltest:"+randomID()+":",
		"JML_SENTRY_URL="+sb.URL, "JML_SENTRY_ORG=acme", "JML_SENTRY_TOKEN="+token)

	eventually(t, "the receiver is ready", func() bool {
		r, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	})
	key, _ := signature.DecodeStandardSecret(secret)
	c := &signedClient{t: t, url: "http://" + httpAddr + "/hooks/generic", key: key, client: &http.Client{Timeout: 10 * time.Second}}
	const who = "jane.doe@acme.test"
	if r := c.send("msg_split_"+randomID(), leaverBody(who)); r.status != http.StatusAccepted || r.body["accepted"] != float64(1) {
		t.Fatalf("%d %v", r.status, r.body)
	}
	eventually(t, who+" is removed by the worker process", func() bool { _, ok := sb.Member(who); return !ok })
	if got := sb.Stats().Mutations["member.remove"][who]; got != 1 {
		t.Fatalf("member.remove = %d", got)
	}

	// The worker on loopback without a token generated one (0600) that the
	// CLI of the machine reads; /v1 refuses requests without it.
	fi, err := os.Stat(filepath.Join(workerData, config.AdminTokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("worker admin.token: %v %v", fi, err)
	}
	if code := adminGet(t, workerAdmin, "/v1/control", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("worker /v1/control without a token: %d", code)
	}
	t.Setenv("JML_ADMIN_ADDR", workerAdmin)
	t.Setenv("JML_DATA_DIR", workerData)
	c2, err := newAdminClient()
	if err != nil {
		t.Fatal(err)
	}
	var ctl map[string]any
	if err := c2.do(t.Context(), http.MethodGet, "/v1/control", nil, &ctl); err != nil {
		t.Fatalf("CLI against the worker: %v", err)
	}

	// Beyond loopback, a worker without a token does not start.
	cmd := exec.Command(filepath.Join(bin, "worker"))
	cmd.Env = append(append([]string{}, common...), "JML_ADMIN_ADDR=0.0.0.0:0", "JML_DATA_DIR="+t.TempDir(),
		"JML_REDIS_URL="+testRedisURL(), "JML_SENTRY_URL="+sb.URL, "JML_SENTRY_ORG=acme", "JML_SENTRY_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "JML_ADMIN_TOKEN") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("worker on 0.0.0.0 without a token: %v\n%s", err, out)
	}
	// The webhook's metrics are on its admin listener, not the public port.
	if r, err := http.Get("http://" + httpAddr + "/metrics"); err != nil || r.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the webhook port: %v %v, want 404", r, err)
	} else {
		r.Body.Close()
	}
	r, err := http.Get("http://" + webhookAdmin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusOK || !strings.Contains(string(b), `jml_events_received_total{outcome="accepted",source="generic",type="leaver"} 1`) {
		t.Errorf("webhook admin /metrics: %d, want the accepted leaver counted\n%s", r.StatusCode, b)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
