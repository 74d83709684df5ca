package config

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/app"
	"github.com/sentry-jml/sentry-jml/internal/policy"
)

const (
	// SharedOperator is the actor of JML_ADMIN_TOKEN.
	SharedOperator = "admin"
	// LocalOperator is the actor of the token generated into the data dir.
	LocalOperator = "local"
	// AdminTokenFile is the generated token's file in JML_DATA_DIR.
	AdminTokenFile = "admin.token"
	// MinAdminTokenLen is the shortest admin token accepted.
	MinAdminTokenLen = 16
)

var operatorName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)

// AdminAuth is how the admin API authenticates, resolved from JML_ADMIN_*.
type AdminAuth struct {
	Operators []app.Operator
	// Named counts the operators of JML_ADMIN_TOKENS_FILE.
	Named int
	// Loopback: JML_ADMIN_ADDR is a loopback address (127.0.0.0/8, ::1, localhost).
	Loopback     bool
	AllowedHosts []string
	// Generated is the path of the token generated into the data dir ("" when
	// tokens are configured).
	Generated string
}

// Options are what app.AdminOptions takes from the authentication.
func (a AdminAuth) Options(o app.AdminOptions) app.AdminOptions {
	o.Operators, o.Loopback, o.AllowedHosts = a.Operators, a.Loopback, a.AllowedHosts
	return o
}

// CheckApprovals refuses a policy whose brakes need more distinct approvers
// than there are named operators.
func (a AdminAuth) CheckApprovals(p policy.Policy) error {
	if p.Brakes.Approvals > 1 && a.Named < p.Brakes.Approvals {
		return fmt.Errorf("config: brakes.approvals: %d needs at least %d named operators in JML_ADMIN_TOKENS_FILE (%d configured)",
			p.Brakes.Approvals, p.Brakes.Approvals, a.Named)
	}
	return nil
}

// AdminAuth resolves the admin API's credentials: JML_ADMIN_TOKEN (actor
// "admin") and the named tokens of JML_ADMIN_TOKENS_FILE. With neither, a
// loopback JML_ADMIN_ADDR gets a token generated into JML_DATA_DIR (actor
// "local"); any other address is a config error.
func (c Common) AdminAuth() (AdminAuth, error) {
	a := AdminAuth{Loopback: IsLoopbackAddr(c.AdminAddr)}
	hosts, err := allowedHosts(c.AdminAllowedHosts)
	if err != nil {
		return AdminAuth{}, err
	}
	a.AllowedHosts = hosts
	if c.AdminToken != "" {
		tok, err := checkToken(c.AdminToken)
		if err != nil {
			return AdminAuth{}, fmt.Errorf("config: JML_ADMIN_TOKEN: %w", err)
		}
		a.Operators = append(a.Operators, app.Operator{Name: SharedOperator, Token: tok})
	}
	if c.AdminTokensFile != "" {
		named, err := ReadTokensFile(c.AdminTokensFile)
		if err != nil {
			return AdminAuth{}, err
		}
		for _, op := range named {
			if len(a.Operators) > 0 && (op.Name == SharedOperator || op.Token == a.Operators[0].Token) {
				return AdminAuth{}, fmt.Errorf("config: JML_ADMIN_TOKENS_FILE: operator %q repeats the name or the token of JML_ADMIN_TOKEN", op.Name)
			}
		}
		a.Operators = append(a.Operators, named...)
		a.Named = len(named)
	}
	if len(a.Operators) > 0 {
		return a, nil
	}
	if !a.Loopback {
		return AdminAuth{}, fmt.Errorf("config: JML_ADMIN_ADDR=%s is not a loopback address: set JML_ADMIN_TOKEN or JML_ADMIN_TOKENS_FILE (the admin API never runs without a token)", c.AdminAddr)
	}
	tok, path, err := LocalAdminToken(c.DataDir)
	if err != nil {
		return AdminAuth{}, err
	}
	a.Operators, a.Generated = []app.Operator{{Name: LocalOperator, Token: tok}}, path
	return a, nil
}

// IsLoopbackAddr reports whether a listen address ("host:port") is bound to
// loopback only: 127.0.0.0/8, ::1 or localhost. ":8081" and 0.0.0.0 are not.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && host != "" && app.IsLoopbackHost(host)
}

// checkToken trims a token read from the environment or a file and refuses an
// empty, short or spaced one.
func checkToken(v string) (string, error) {
	tok := strings.TrimSpace(v)
	switch {
	case tok == "":
		return "", errors.New("empty token")
	case strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return "", errors.New("the token contains spaces or control characters")
	case len(tok) < MinAdminTokenLen:
		return "", fmt.Errorf("the token is shorter than %d characters", MinAdminTokenLen)
	}
	return tok, nil
}

// ReadTokensFile reads JML_ADMIN_TOKENS_FILE: one "name token" per line;
// blank lines and lines starting with # are skipped. Errors name the line,
// never the token.
func ReadTokensFile(path string) ([]app.Operator, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: JML_ADMIN_TOKENS_FILE: %w", err)
	}
	ops, err := parseTokens(b)
	if err != nil {
		return nil, fmt.Errorf("config: JML_ADMIN_TOKENS_FILE %s: %w", path, err)
	}
	return ops, nil
}

func parseTokens(b []byte) ([]app.Operator, error) {
	var ops []app.Operator
	names, tokens := map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"name token\" (%d fields)", n, len(f))
		}
		name, tok := f[0], f[1]
		if !operatorName.MatchString(name) {
			return nil, fmt.Errorf("line %d: operator name %q: letters, digits and . _ @ + - only, at most 64", n, name)
		}
		if _, err := checkToken(tok); err != nil {
			return nil, fmt.Errorf("line %d (%s): %w", n, name, err)
		}
		if prev, dup := names[name]; dup {
			return nil, fmt.Errorf("line %d: operator %q is already on line %d", n, name, prev)
		}
		if prev, dup := tokens[tok]; dup {
			return nil, fmt.Errorf("line %d (%s): the same token as line %d", n, name, prev)
		}
		names[name], tokens[tok] = n, n
		ops = append(ops, app.Operator{Name: name, Token: tok})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ops) == 0 {
		return nil, errors.New("no operator in the file (an empty tokens file never turns authentication off)")
	}
	return ops, nil
}

// allowedHosts checks JML_ADMIN_ALLOWED_HOSTS: host names with an optional port.
func allowedHosts(in []string) ([]string, error) {
	var out []string
	for _, h := range in {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		host := h
		if hh, port, err := net.SplitHostPort(h); err == nil {
			if port == "" || strings.Trim(port, "0123456789") != "" {
				return nil, fmt.Errorf("config: JML_ADMIN_ALLOWED_HOSTS: %q: bad port", h)
			}
			host = hh
		}
		if host == "" || strings.ContainsAny(host, "/@?#* \t") || strings.Contains(host, "://") {
			return nil, fmt.Errorf("config: JML_ADMIN_ALLOWED_HOSTS: %q: want a host name with an optional :port", h)
		}
		out = append(out, h)
	}
	return out, nil
}

// LocalAdminToken returns the admin token of the data dir, generating it on
// first use: the dir is tightened to 0700 and the file created with mode 0600
// (atomically, so processes sharing the dir agree on one token). The token is
// never printed.
func LocalAdminToken(dataDir string) (token, path string, err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", "", fmt.Errorf("JML_DATA_DIR: %w", err)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return "", "", fmt.Errorf("JML_DATA_DIR: %w", err)
	}
	path = filepath.Join(dataDir, AdminTokenFile)
	if tok, err := ReadLocalAdminToken(dataDir); err == nil {
		return tok, path, os.Chmod(path, 0o600)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("admin token: %w", err)
	}
	tok := "jmladm_" + base64.RawURLEncoding.EncodeToString(b)
	if err := createExclusive(path, []byte(tok+"\n")); errors.Is(err, os.ErrExist) {
		// Another process of this data dir was first: use its token.
		tok, err = ReadLocalAdminToken(dataDir)
		return tok, path, err
	} else if err != nil {
		return "", "", fmt.Errorf("JML_DATA_DIR: admin token: %w", err)
	}
	return tok, path, nil
}

// ReadLocalAdminToken reads $JML_DATA_DIR/admin.token (the CLI on the machine
// of `jml run` authenticates with it). A missing file is os.ErrNotExist.
func ReadLocalAdminToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, AdminTokenFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok, err := checkToken(string(b))
	if err != nil {
		return "", fmt.Errorf("%s: %w (delete it to generate a new one)", path, err)
	}
	return tok, nil
}

// createExclusive writes data to a temporary file of mode 0600 next to path
// and links it to path, failing with os.ErrExist when path exists: a reader
// never sees a partial file.
func createExclusive(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".admin.token-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Link(tmp, path)
}
