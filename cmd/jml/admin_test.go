package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
)

const (
	aliceToken = "alice-0123456789abcdef0123"
	bobToken   = "bob-0123456789abcdef0123"
)

func adminGet(t *testing.T, addr, path, token string, hdr map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRunGeneratesAdminTokenForTheCLI: `jml run` on loopback without a token
// generates one into the data dir (0600, dir 0700), never prints it, requires
// it on /v1, and the CLI on the machine reads it.
func TestRunGeneratesAdminTokenForTheCLI(t *testing.T) {
	sys := mustRunMain(t, "")
	path := filepath.Join(sys.cfg.DataDir, config.AdminTokenFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v %v, want mode 0600", fi, err)
	}
	if di, _ := os.Stat(sys.cfg.DataDir); di.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v, want 0700", di.Mode().Perm())
	}
	tok, err := config.ReadLocalAdminToken(sys.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	var banner bytes.Buffer
	sys.banner(&banner)
	if strings.Contains(banner.String(), tok) || !strings.Contains(banner.String(), path) {
		t.Fatalf("the banner prints the token or not its file:\n%s", banner.String())
	}
	if code := adminGet(t, sys.adminAddr, "/v1/status", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("/v1/status without a token: %d", code)
	}
	if code := adminGet(t, sys.adminAddr, "/v1/status", tok, nil); code != http.StatusOK {
		t.Fatalf("/v1/status with the generated token: %d", code)
	}
	if code := adminGet(t, sys.adminAddr, "/v1/status", tok, map[string]string{"Origin": "http://evil.example"}); code != http.StatusForbidden {
		t.Fatalf("/v1/status from a browser: %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+sys.adminAddr+"/v1/status", nil)
	req.Host = "rebound.evil.example"
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("/v1/status with a foreign Host: %v %v", resp, err)
	}
	v, err := runCLI(t, sys, "pause")
	if err != nil || v["paused"] != true || v["paused_by"] != config.LocalOperator {
		t.Fatalf("pause with the generated token: %v %v", v, err)
	}
	// A wrong JML_ADMIN_TOKEN wins over the file and is refused, with a hint.
	t.Setenv("JML_ADMIN_TOKEN", "wrong-0123456789abcdef")
	err = dispatch(context.Background(), []string{"status"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "JML_ADMIN_TOKEN") {
		t.Fatalf("status with a wrong token: %v", err)
	}
}

// TestRunNamedOperators: with JML_ADMIN_TOKENS_FILE the actor of pause and
// approve is the token's name, whatever X-JML-Actor says.
func TestRunNamedOperators(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	if err := os.WriteFile(file, []byte("# ops\nalice "+aliceToken+"\nbob "+bobToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Common{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", SandboxToken: "sandbox",
		DataDir: dir, LogLevel: "debug", MaxBodyBytes: 1 << 20, StreamReplicas: 1, AdminTokensFile: file,
		PolicyFile: filepath.Join(dir, "policy.yaml")}
	if err := os.WriteFile(cfg.PolicyFile, []byte("brakes: {approvals: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sys, err := startAll(context.Background(), cfg, runOptions{stdout: io.Discard, logs: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Close)
	if _, err := os.Stat(filepath.Join(dir, config.AdminTokenFile)); !os.IsNotExist(err) {
		t.Fatalf("a token was generated although tokens are configured: %v", err)
	}
	t.Setenv("JML_ADMIN_TOKEN", aliceToken)
	v, err := runCLI(t, sys, "pause")
	if err != nil || v["paused_by"] != "alice" {
		t.Fatalf("pause as alice: %v %v", v, err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+sys.adminAddr+"/v1/resume", nil)
	req.Header.Set("Authorization", "Bearer "+bobToken)
	req.Header.Set("X-JML-Actor", "mallory")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || bytes.Contains(b, []byte("mallory")) {
		t.Fatalf("resume as bob with X-JML-Actor: %d %s", resp.StatusCode, b)
	}
	// Both named tokens authenticate; the shared one is not configured.
	for _, tok := range []string{aliceToken, bobToken} {
		if code := adminGet(t, sys.adminAddr, "/v1/control", tok, nil); code != http.StatusOK {
			t.Fatalf("control: %d", code)
		}
	}
}

// TestRunAdminConfigErrors: start refuses a non-loopback admin API without a
// token and two approvals without two named operators, before listening.
func TestRunAdminConfigErrors(t *testing.T) {
	base := func() config.Common {
		return config.Common{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", SandboxToken: "sandbox",
			DataDir: t.TempDir(), LogLevel: "debug", MaxBodyBytes: 1 << 20, StreamReplicas: 1}
	}
	c := base()
	c.AdminAddr = "0.0.0.0:0"
	if _, err := startAll(context.Background(), c, runOptions{stdout: io.Discard, logs: io.Discard}); err == nil ||
		!strings.Contains(err.Error(), "JML_ADMIN_TOKEN") {
		t.Fatalf("non-loopback without a token: %v", err)
	}
	c = base()
	c.AdminToken = "shared-0123456789abcdef"
	c.PolicyFile = filepath.Join(c.DataDir, "policy.yaml")
	if err := os.WriteFile(c.PolicyFile, []byte("brakes: {approvals: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := startAll(context.Background(), c, runOptions{stdout: io.Discard, logs: io.Discard}); err == nil ||
		!strings.Contains(err.Error(), "brakes.approvals") || !strings.Contains(err.Error(), "JML_ADMIN_TOKENS_FILE") {
		t.Fatalf("approvals 2 with a shared token only: %v", err)
	}
	c = base()
	c.AdminToken = "short"
	if _, err := startAll(context.Background(), c, runOptions{stdout: io.Discard, logs: io.Discard}); err == nil ||
		!strings.Contains(err.Error(), "JML_ADMIN_TOKEN") {
		t.Fatalf("short token: %v", err)
	}
}

// TestRunEmbeddedNATSNeedsCredentials: the embedded server refuses a client
// without credentials; nats.url (0600) carries them for `jml` subcommands.
func TestRunEmbeddedNATSNeedsCredentials(t *testing.T) {
	sys := mustRunMain(t, "")
	if nc, err := nats.Connect(sys.ns.RedactedURL(), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("the embedded NATS accepted a client without credentials")
	}
	path := filepath.Join(sys.cfg.DataDir, natsURLFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("nats.url: %v %v", fi, err)
	}
	b, _ := os.ReadFile(path)
	nc, err := nats.Connect(strings.TrimSpace(string(b)), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect with nats.url: %v", err)
	}
	nc.Close()
	// doctor finds NATS through the data dir and never prints the password.
	t.Setenv("JML_DATA_DIR", sys.cfg.DataDir)
	var out bytes.Buffer
	_ = cmdDoctor(context.Background(), nil, &out, io.Discard)
	u, _ := url.Parse(sys.ns.ClientURL())
	pw, _ := u.User.Password()
	if pw == "" || !strings.Contains(out.String(), "ok    nats") || strings.Contains(out.String(), pw) {
		t.Fatalf("doctor:\n%s", out.String())
	}
	var st map[string]any
	st, err = runCLI(t, sys, "status")
	if err != nil || strings.Contains(st["nats"].(string), pw) || strings.Contains(st["nats"].(string), "@") {
		t.Fatalf("status shows NATS credentials: %v %v", st, err)
	}
}
