package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// sampleEnv points the CLI at dataDir only: no JML_HTTP_ADDR, no configured secret.
func sampleEnv(t *testing.T, dataDir string) {
	t.Helper()
	t.Setenv("JML_DATA_DIR", dataDir)
	for _, k := range []string{"JML_HTTP_ADDR", "JML_SOURCE_GENERIC_SECRET", "JML_SOURCE_GENERIC_SECRET_FILE"} {
		t.Setenv(k, "")
		_ = os.Unsetenv(k)
	}
}

// TestSendSampleFindsItsInstance: send-sample with the data dir of a running
// `jml run` finds its receiver (http.addr) and its secret; with another data
// dir it says exactly what is wrong and creates nothing (it used to generate a
// fresh secret there and earn a 401); against a receiver with another secret
// it explains the 401.
func TestSendSampleFindsItsInstance(t *testing.T) {
	sys := mustRunMain(t, "")
	ctx := context.Background()
	sampleEnv(t, sys.cfg.DataDir)
	var out bytes.Buffer
	if err := cmdSendSample(ctx, []string{"leaver", "--email", "jane.doe@acme.test"}, &out, io.Discard); err != nil {
		t.Fatalf("send-sample with the instance's data dir: %v", err)
	}
	if !strings.Contains(out.String(), "202 Accepted") || !strings.Contains(out.String(), sys.httpAddr) {
		t.Fatalf("send-sample: %q", out.String())
	}

	other := t.TempDir()
	sampleEnv(t, other)
	err := cmdSendSample(ctx, []string{"leaver", "--email", "jane.doe@acme.test", "--url", "http://" + sys.httpAddr}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no generic secret in "+filepath.Join(other, genericSecretFile)) || !strings.Contains(err.Error(), "JML_DATA_DIR") {
		t.Fatalf("another data dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, genericSecretFile)); !os.IsNotExist(err) {
		t.Fatalf("send-sample created a secret in another data dir (%v)", err)
	}

	if err := os.WriteFile(filepath.Join(other, genericSecretFile), []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = cmdSendSample(ctx, []string{"leaver", "--email", "jane.doe@acme.test", "--url", "http://" + sys.httpAddr}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "refused the signature made with the secret in "+filepath.Join(other, genericSecretFile)) {
		t.Fatalf("a receiver with another secret: %v", err)
	}
}

func directoryKeys(t *testing.T, sys *system) int {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(sys.nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, jsstate.BucketDirectory)
	if err != nil {
		return 0
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return n
}

// TestRestartWithSandboxResetsBoth: the sandbox starts from its seed on every
// `jml run`, so the JetStream state in the data dir is reset with it — a
// directory remembering a leaver the new sandbox still has would make the
// first reconcile halt. The generated secret survives the restart.
func TestRestartWithSandboxResetsBoth(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Common{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", SandboxToken: "sandbox",
		DataDir: dir, LogLevel: "error", MaxBodyBytes: 1 << 20, MaxClockSkew: 5 * time.Minute, StreamReplicas: 1}
	sys, err := startAll(context.Background(), cfg, runOptions{stdout: io.Discard, logs: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sampleEnv(t, dir)
	if err := cmdSendSample(context.Background(), []string{"leaver", "--email", "jane.doe@acme.test"}, io.Discard, io.Discard); err != nil {
		sys.Close()
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for directoryKeys(t, sys) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if directoryKeys(t, sys) == 0 {
		sys.Close()
		t.Fatal("the leaver never reached the directory")
	}
	secret, _ := os.ReadFile(filepath.Join(dir, genericSecretFile))
	sys.Close()

	sys, err = startAll(context.Background(), cfg, runOptions{stdout: io.Discard, logs: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	if n := directoryKeys(t, sys); n != 0 {
		t.Fatalf("after a restart with a fresh sandbox the directory still has %d records", n)
	}
	if _, ok := sys.sandbox.Member("jane.doe@acme.test"); !ok {
		t.Fatal("the restarted sandbox lacks the seeded jane")
	}
	if again, _ := os.ReadFile(filepath.Join(dir, genericSecretFile)); !bytes.Equal(secret, again) || len(secret) == 0 {
		t.Fatal("the generated secret changed across the restart")
	}
}

// TestNATSPort: JML_NATS_PORT fixes the embedded server's port; a value that
// is not a port is refused at start.
func TestNATSPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := config.Common{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", SandboxToken: "sandbox",
		DataDir: t.TempDir(), LogLevel: "error", MaxBodyBytes: 1 << 20, MaxClockSkew: 5 * time.Minute, StreamReplicas: 1, NATSPort: port}
	sys, err := startAll(context.Background(), cfg, runOptions{stdout: io.Discard, logs: io.Discard, noWorker: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	if !strings.HasSuffix(sys.ns.ClientURL(), ":"+strconv.Itoa(port)) {
		t.Fatalf("embedded NATS at %s, want port %d", sys.ns.ClientURL(), port)
	}
	for _, bad := range []string{"70000", "-1", "four-two-two-two"} {
		t.Setenv("JML_NATS_PORT", bad)
		if _, err := config.Load(); err == nil || !strings.Contains(err.Error(), "NATS_PORT") {
			t.Errorf("JML_NATS_PORT=%s: %v", bad, err)
		}
	}
}

// TestDoctorSaysBambooHRCannotProvision: `jml doctor` warns that BambooHR
// without API access cannot provision joiners, and stops warning once the API
// is configured.
func TestDoctorSaysBambooHRCannotProvision(t *testing.T) {
	var out bytes.Buffer
	doctorSources(&out, map[string]providers.Settings{"bamboohr": {Secrets: []string{"k"}}, "deel": {Secrets: []string{"k"}}, "hibob": {}})
	got := out.String()
	if !strings.Contains(got, "warn  source bamboohr") || !strings.Contains(got, "jml unresolved") || !strings.Contains(got, "ok    source deel") || strings.Contains(got, "hibob") {
		t.Fatalf("doctor:\n%s", got)
	}
	out.Reset()
	doctorSources(&out, map[string]providers.Settings{"bamboohr": {Secrets: []string{"k"}, APIURL: "https://api.bamboohr.com/api/gateway.php/acme", APIToken: "t"}})
	if !strings.Contains(out.String(), "ok    source bamboohr") {
		t.Fatalf("doctor with the API:\n%s", out.String())
	}
}
