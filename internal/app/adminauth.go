package app

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Operator is one credential of the admin API: Name is the actor recorded for
// what the bearer of Token does (pause, resume, approvals, reconcile runs,
// roster imports…).
type Operator struct {
	Name  string
	Token string
}

type operatorKey struct{}

// OperatorFrom is the name of the operator whose token authenticated the
// request carrying ctx ("" outside an authenticated /v1 request). It is the
// only source of the actor: no client header is trusted for it.
func OperatorFrom(ctx context.Context) string {
	name, _ := ctx.Value(operatorKey{}).(string)
	return name
}

func withOperator(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, operatorKey{}, name)
}

// guard is what every /v1 request passes: no browser, a Host that a DNS
// rebinding cannot produce on a loopback listener, and a known bearer token.
type guard struct {
	names    []string
	digests  [][sha256.Size]byte
	loopback bool
	allowed  []hostPort
	log      *slog.Logger
}

// hostPort is one JML_ADMIN_ALLOWED_HOSTS entry; an empty port allows any.
type hostPort struct{ host, port string }

func newGuard(o AdminOptions) *guard {
	g := &guard{loopback: o.Loopback, log: o.Logger}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	for _, op := range o.Operators {
		if op.Token == "" {
			continue // never a credential: an empty bearer must not match
		}
		g.names = append(g.names, op.Name)
		g.digests = append(g.digests, sha256.Sum256([]byte(op.Token)))
	}
	for _, h := range o.AllowedHosts {
		host, port := splitHost(h)
		g.allowed = append(g.allowed, hostPort{host: normHost(host), port: port})
	}
	return g
}

// wrap refuses browsers (403), foreign Hosts on a loopback listener (421)
// and requests without a known token (401); it puts the operator's name in
// the context of the others.
func (g *guard) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.loopback && !g.hostAllowed(r.Host) {
			writeJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": "this admin API answers only to a loopback Host (see JML_ADMIN_ALLOWED_HOSTS)"})
			return
		}
		if fromBrowser(r) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "browser requests are refused"})
			return
		}
		name, ok := g.authenticate(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jml-admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		lv := slog.LevelDebug
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			lv = slog.LevelInfo
		}
		g.log.Log(r.Context(), lv, "admin request", "operator", name, "method", r.Method, "path", r.URL.Path)
		h.ServeHTTP(w, r.WithContext(withOperator(r.Context(), name)))
	})
}

// fromBrowser: browsers send Origin on cross-origin and non-GET requests and
// Sec-Fetch-Site on every request; the CLI sends neither.
func fromBrowser(r *http.Request) bool {
	return r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != ""
}

// authenticate finds the operator whose token is the bearer of header. It
// compares SHA-256 digests (fixed length, so the token's length does not
// show) in constant time against every token, without an early exit.
func (g *guard) authenticate(header string) (string, bool) {
	scheme, token, _ := strings.Cut(header, " ")
	got := sha256.Sum256([]byte(token))
	match := -1
	for i := range g.digests {
		eq := subtle.ConstantTimeCompare(got[:], g.digests[i][:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return g.names[match], true
}

// hostAllowed: a loopback literal or localhost (any port), or an entry of
// the allow list (its port, when it names one).
func (g *guard) hostAllowed(hostHeader string) bool {
	host, port := splitHost(hostHeader)
	host = normHost(host)
	if host == "" {
		return false
	}
	if IsLoopbackHost(host) {
		return true
	}
	for _, a := range g.allowed {
		if a.host == host && (a.port == "" || a.port == port) {
			return true
		}
	}
	return false
}

// IsLoopbackHost reports whether host (no port) is localhost or a loopback
// IP literal (127.0.0.0/8, ::1).
func IsLoopbackHost(host string) bool {
	host = normHost(host)
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// splitHost splits "host:port", "[v6]:port", "[v6]" or "host".
func splitHost(hp string) (host, port string) {
	if h, p, err := net.SplitHostPort(hp); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(hp, "["), "]"), ""
}

func normHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }
