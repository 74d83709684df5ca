package config

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/policy"
)

const (
	tokA = "tok-a-0123456789abcdef"
	tokB = "tok-b-0123456789abcdef"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIsLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8081": true, "127.1.2.3:0": true, "[::1]:8081": true, "localhost:8081": true, "LOCALHOST:1": true,
		"0.0.0.0:8081": false, ":8081": false, "[::]:8081": false, "10.0.0.5:8081": false, "jml.example:8081": false,
		"localhost.example:1": false, "8081": false, "": false,
	} {
		if got := IsLoopbackAddr(addr); got != want {
			t.Errorf("IsLoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestAdminAuthNonLoopbackNeedsToken: beyond loopback a missing token is a
// config error that names both variables; nothing is generated.
func TestAdminAuthNonLoopbackNeedsToken(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8081", ":8081", "10.0.0.5:8081", "jml.example:8081", "[::]:8081"} {
		dir := t.TempDir()
		_, err := Common{AdminAddr: addr, DataDir: dir}.AdminAuth()
		if err == nil || !strings.Contains(err.Error(), "JML_ADMIN_TOKEN") || !strings.Contains(err.Error(), "JML_ADMIN_TOKENS_FILE") ||
			strings.Contains(err.Error(), "\n") {
			t.Errorf("%s without a token: %v", addr, err)
		}
		if _, err := os.Stat(filepath.Join(dir, AdminTokenFile)); !os.IsNotExist(err) {
			t.Errorf("%s: a token was generated: %v", addr, err)
		}
	}
	a, err := Common{AdminAddr: "0.0.0.0:8081", AdminToken: tokA}.AdminAuth()
	if err != nil || len(a.Operators) != 1 || a.Operators[0].Name != SharedOperator || a.Loopback {
		t.Fatalf("with a token: %+v %v", a, err)
	}
}

// TestAdminAuthGeneratesOnLoopback: the token is generated once into the data
// dir (file 0600, dir tightened to 0700), reused, and read by the CLI helper.
func TestAdminAuthGeneratesOnLoopback(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := Common{AdminAddr: "127.0.0.1:8081", DataDir: dir}
	a, err := c.AdminAuth()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Operators) != 1 || a.Operators[0].Name != LocalOperator || len(a.Operators[0].Token) < 32 || !a.Loopback ||
		a.Generated != filepath.Join(dir, AdminTokenFile) {
		t.Fatalf("generated: %+v", a)
	}
	fi, err := os.Stat(a.Generated)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v %v, want 0600", fi.Mode(), err)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v, want 0700", di.Mode().Perm())
	}
	again, err := c.AdminAuth()
	if err != nil || again.Operators[0].Token != a.Operators[0].Token {
		t.Fatalf("second start: a different token (%v)", err)
	}
	if tok, err := ReadLocalAdminToken(dir); err != nil || tok != a.Operators[0].Token {
		t.Fatalf("ReadLocalAdminToken: %v", err)
	}
	// A loosened file is tightened again.
	if err := os.Chmod(a.Generated, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AdminAuth(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(a.Generated); fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v after restart", fi.Mode().Perm())
	}
	// An emptied file is an error, never "no token".
	if err := os.WriteFile(a.Generated, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AdminAuth(); err == nil {
		t.Fatal("an empty admin.token was accepted")
	}
}

// TestLocalAdminTokenConcurrent: processes sharing a data dir agree on one token.
func TestLocalAdminTokenConcurrent(t *testing.T) {
	dir := t.TempDir()
	toks := make([]string, 8)
	var wg sync.WaitGroup
	for i := range toks {
		wg.Go(func() {
			tok, _, err := LocalAdminToken(dir)
			if err != nil {
				t.Error(err)
			}
			toks[i] = tok
		})
	}
	wg.Wait()
	for _, tok := range toks {
		if tok == "" || tok != toks[0] {
			t.Fatalf("tokens differ: %q", toks)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("data dir holds %d entries, want only %s", len(ents), AdminTokenFile)
	}
}

func TestTokensFile(t *testing.T) {
	good := "# operators\n\nalice " + tokA + "\n  bob.smith@acme.com\t" + tokB + "  \n# end\n"
	ops, err := ReadTokensFile(writeFile(t, good))
	if err != nil || len(ops) != 2 || ops[0].Name != "alice" || ops[0].Token != tokA || ops[1].Name != "bob.smith@acme.com" || ops[1].Token != tokB {
		t.Fatalf("good file: %+v %v", ops, err)
	}
	bad := map[string]struct{ content, want string }{
		"empty":          {"", "no operator"},
		"comments only":  {"# nobody\n\n", "no operator"},
		"duplicate name": {"alice " + tokA + "\nalice " + tokB + "\n", "line 2"},
		"duplicate tok":  {"alice " + tokA + "\n\nbob " + tokA + "\n", "line 3"},
		"bad name":       {"al/ice " + tokA + "\n", "line 1"},
		"short token":    {"alice " + tokA + "\nbob short\n", "line 2"},
		"one field":      {tokA + "\n", "line 1"},
		"three fields":   {"alice " + tokA + " extra\n", "line 1"},
	}
	for name, tc := range bad {
		_, err := ReadTokensFile(writeFile(t, tc.content))
		if err == nil || !strings.Contains(err.Error(), "JML_ADMIN_TOKENS_FILE") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming JML_ADMIN_TOKENS_FILE and %q", name, err, tc.want)
		} else if strings.Contains(err.Error(), tokA) {
			t.Errorf("%s: the error reveals a token: %v", name, err)
		}
	}
	if _, err := ReadTokensFile(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "JML_ADMIN_TOKENS_FILE") {
		t.Errorf("missing file: %v", err)
	}
}

// TestAdminAuthBothSources: the shared and named tokens combine; a repeated
// name or token across them is an error; an empty tokens file is one too.
func TestAdminAuthBothSources(t *testing.T) {
	file := writeFile(t, "alice "+tokB+"\n")
	a, err := Common{AdminAddr: "0.0.0.0:1", AdminToken: tokA, AdminTokensFile: file}.AdminAuth()
	if err != nil || len(a.Operators) != 2 || a.Named != 1 || a.Operators[1].Name != "alice" {
		t.Fatalf("%+v %v", a, err)
	}
	for name, content := range map[string]string{"same token": "alice " + tokA + "\n", "shared name": "admin " + tokB + "\n"} {
		_, err := Common{AdminAddr: "0.0.0.0:1", AdminToken: tokA, AdminTokensFile: writeFile(t, content)}.AdminAuth()
		if err == nil || !strings.Contains(err.Error(), "JML_ADMIN_TOKENS_FILE") {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, loopback := range []string{"127.0.0.1:1", "0.0.0.0:1"} {
		if _, err := (Common{AdminAddr: loopback, DataDir: t.TempDir(), AdminTokensFile: writeFile(t, "\n")}).AdminAuth(); err == nil {
			t.Errorf("%s: an empty tokens file was accepted", loopback)
		}
	}
	if _, err := (Common{AdminAddr: "127.0.0.1:1", AdminToken: "short"}).AdminAuth(); err == nil || !strings.Contains(err.Error(), "JML_ADMIN_TOKEN") {
		t.Errorf("short shared token: %v", err)
	}
	if _, err := (Common{AdminAddr: "127.0.0.1:1", AdminToken: "has space 0123456789"}).AdminAuth(); err == nil {
		t.Error("a token with a space was accepted")
	}
}

// TestLoadRefusesEmptyAdminToken: JML_ADMIN_TOKEN set but empty, or its file
// empty or blank, is a config error, not "no authentication".
func TestLoadRefusesEmptyAdminToken(t *testing.T) {
	cases := map[string]map[string]string{
		"empty var":         {"JML_ADMIN_TOKEN": ""},
		"blank var":         {"JML_ADMIN_TOKEN": "  "},
		"empty file":        {"JML_ADMIN_TOKEN_FILE": writeFile(t, "")},
		"blank file":        {"JML_ADMIN_TOKEN_FILE": writeFile(t, " \n\n")},
		"empty file var":    {"JML_ADMIN_TOKEN_FILE": ""},
		"empty tokens var":  {"JML_ADMIN_TOKENS_FILE": ""},
		"missing file":      {"JML_ADMIN_TOKEN_FILE": filepath.Join(t.TempDir(), "nope")},
		"token + file both": {"JML_ADMIN_TOKEN": tokA, "JML_ADMIN_TOKEN_FILE": writeFile(t, tokB)},
	}
	for name, env := range cases {
		t.Run(name, func(t *testing.T) {
			os.Unsetenv("JML_ADMIN_TOKEN")
			for k, v := range env {
				t.Setenv(k, v)
			}
			t.Cleanup(func() { os.Unsetenv("JML_ADMIN_TOKEN") })
			if _, err := Load(); err == nil || !strings.Contains(err.Error(), "JML_ADMIN_TOKEN") {
				t.Fatalf("Load: %v, want an error naming JML_ADMIN_TOKEN*", err)
			}
		})
	}
	t.Run("file", func(t *testing.T) {
		t.Setenv("JML_ADMIN_TOKEN_FILE", writeFile(t, tokA+"\n"))
		t.Cleanup(func() { os.Unsetenv("JML_ADMIN_TOKEN") })
		c, err := Load()
		if err != nil || c.AdminToken != tokA {
			t.Fatalf("%q %v", c.AdminToken, err)
		}
	})
	t.Run("allowed hosts", func(t *testing.T) {
		t.Setenv("JML_ADMIN_ALLOWED_HOSTS", "jml.internal, fwd.example:18081")
		c, err := Load()
		if err != nil {
			t.Fatal(err)
		}
		a, err := Common{AdminAddr: "127.0.0.1:1", AdminToken: tokA, AdminAllowedHosts: c.AdminAllowedHosts}.AdminAuth()
		if err != nil || len(a.AllowedHosts) != 2 || a.AllowedHosts[1] != "fwd.example:18081" {
			t.Fatalf("%+v %v", a.AllowedHosts, err)
		}
	})
}

func TestAllowedHostsRefusesURLs(t *testing.T) {
	for _, h := range []string{"http://jml.internal", "jml.internal/x", "user@jml.internal", "jml.internal:port", "*.example"} {
		if _, err := (Common{AdminAddr: "127.0.0.1:1", AdminToken: tokA, AdminAllowedHosts: []string{h}}).AdminAuth(); err == nil ||
			!strings.Contains(err.Error(), "JML_ADMIN_ALLOWED_HOSTS") {
			t.Errorf("%q: %v", h, err)
		}
	}
}

// TestCheckApprovals: two approvals need two named operators; the shared
// token does not count.
func TestCheckApprovals(t *testing.T) {
	two, err := policy.Parse("p.yaml", []byte("brakes: {approvals: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	one := policy.Default()
	for _, tc := range []struct {
		c    Common
		pol  policy.Policy
		fail bool
	}{
		{Common{AdminAddr: "0.0.0.0:1", AdminToken: tokA}, two, true},
		{Common{AdminAddr: "0.0.0.0:1", AdminToken: tokA, AdminTokensFile: writeFile(t, "alice "+tokB+"\n")}, two, true},
		{Common{AdminAddr: "127.0.0.1:1", DataDir: t.TempDir()}, two, true},
		{Common{AdminAddr: "0.0.0.0:1", AdminTokensFile: writeFile(t, "alice "+tokA+"\nbob "+tokB+"\n")}, two, false},
		{Common{AdminAddr: "0.0.0.0:1", AdminToken: tokA}, one, false},
	} {
		a, err := tc.c.AdminAuth()
		if err != nil {
			t.Fatal(err)
		}
		err = a.CheckApprovals(tc.pol)
		if (err != nil) != tc.fail || (err != nil && !strings.Contains(err.Error(), "JML_ADMIN_TOKENS_FILE")) {
			t.Errorf("%d named, approvals %d: %v", a.Named, tc.pol.Brakes.Approvals, err)
		}
	}
}
