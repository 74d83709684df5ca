package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	"go.opentelemetry.io/otel/metric"

	"github.com/sentry-jml/sentry-jml/internal/alert"
	"github.com/sentry-jml/sentry-jml/internal/app"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/okta"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/redisstate"
)

// Prefix of every variable.
const Prefix = "JML"

// Common is what every process reads.
type Common struct {
	NatsURL  string `envconfig:"NATS_URL" desc:"NATS server URL(s), comma separated"`
	RedisURL string `envconfig:"REDIS_URL" desc:"redis:// or rediss:// URL of the coordination store"`
	// RedisAddrs/RedisMasterName select Cluster (2+ addrs) or Sentinel (master name).
	RedisAddrs      []string `envconfig:"REDIS_ADDRS"`
	RedisMasterName string   `envconfig:"REDIS_MASTER_NAME"`
	RedisPassword   string   `envconfig:"REDIS_PASSWORD"`
	RedisPrefix     string   `envconfig:"REDIS_PREFIX" default:"jml:"`
	HTTPAddr        string   `envconfig:"HTTP_ADDR" default:"127.0.0.1:8080"`
	AdminAddr       string   `envconfig:"ADMIN_ADDR" default:"127.0.0.1:8081"`
	AdminToken      string   `envconfig:"ADMIN_TOKEN"`
	// AdminTokensFile holds named operator tokens, one "name token" per line.
	AdminTokensFile string `envconfig:"ADMIN_TOKENS_FILE"`
	// AdminAllowedHosts are extra Host names for a loopback admin API (port-forwards).
	AdminAllowedHosts []string `envconfig:"ADMIN_ALLOWED_HOSTS"`
	DataDir           string   `envconfig:"DATA_DIR" default:"./.jml-data"`
	// NATSPort fixes the loopback port of `jml run`'s embedded NATS (0 = random).
	NATSPort     int           `envconfig:"NATS_PORT" default:"0"`
	LogLevel     string        `envconfig:"LOG_LEVEL" default:"info"`
	MaxBodyBytes int64         `envconfig:"MAX_BODY_BYTES" default:"1048576"`
	MaxClockSkew time.Duration `envconfig:"MAX_CLOCK_SKEW" default:"5m"`
	// AuditPoll is how often the audit-log follower reads Sentry's audit
	// log (issue 18); 0 turns the follower off.
	AuditPoll      time.Duration `envconfig:"AUDIT_POLL" default:"10s"`
	PublicURL      string        `envconfig:"PUBLIC_URL"`
	StreamReplicas int           `envconfig:"STREAM_REPLICAS" default:"1"`
	EventsMaxAge   time.Duration `envconfig:"EVENTS_MAX_AGE" default:"2160h"`
	PolicyFile     string        `envconfig:"POLICY_FILE"`
	Protected      []string      `envconfig:"PROTECTED"`

	SentryURL       string `envconfig:"SENTRY_URL"`
	SentryOrg       string `envconfig:"SENTRY_ORG"`
	SentryToken     string `envconfig:"SENTRY_TOKEN"`
	SentrySCIMToken string `envconfig:"SENTRY_SCIM_TOKEN"`

	SandboxAddr  string `envconfig:"SANDBOX_ADDR" default:"127.0.0.1:9000"`
	SandboxToken string `envconfig:"SANDBOX_TOKEN" default:"sandbox"`
	// SandboxSCIMToken is the embedded sandbox's SCIM token (jml run; also
	// the default of jml sandbox --scim-token); empty: generated.
	SandboxSCIMToken string `envconfig:"SANDBOX_SCIM_TOKEN"`

	GenericSecret string `envconfig:"SOURCE_GENERIC_SECRET"`

	// Evidence: the ed25519 key that signs the chain head (see EvidenceKey),
	// and how often the head is signed.
	EvidenceSigningKey  string        `envconfig:"EVIDENCE_SIGNING_KEY"`
	EvidenceAnchorEvery time.Duration `envconfig:"EVIDENCE_ANCHOR_EVERY" default:"5m"`

	// Roster: a scheduled fetch of an HR export (CSV or JSON, see docs/reconcile.md).
	RosterURL           string        `envconfig:"ROSTER_URL"`
	RosterAuthorization string        `envconfig:"ROSTER_AUTHORIZATION"`
	RosterFull          bool          `envconfig:"ROSTER_FULL"`
	RosterEvery         time.Duration `envconfig:"ROSTER_EVERY" default:"1h"`
	// RosterMaxBytes bounds a roster body (admin import: 413 beyond; fetch: an error).
	RosterMaxBytes int64 `envconfig:"ROSTER_MAX_BYTES" default:"536870912"`

	AlertSlackURL      string `envconfig:"ALERT_SLACK_URL"`
	AlertWebhookURL    string `envconfig:"ALERT_WEBHOOK_URL"`
	AlertWebhookSecret string `envconfig:"ALERT_WEBHOOK_SECRET"`

	// SharedIDSpace lists the sources whose HR ids are one id space, "hr"
	// (the same id from any of them is one person); every other source's
	// ids are its own.
	SharedIDSpace []string `envconfig:"SHARED_ID_SPACE" default:"generic,roster"`
	// Other sources are read by Sources(): JML_SOURCE_<NAME>_SECRET, _API_URL, _API_TOKEN.
}

// secretVars are read from <NAME>_FILE when <NAME> is unset.
var secretVars = []string{"SENTRY_TOKEN", "SENTRY_SCIM_TOKEN", "REDIS_URL", "REDIS_PASSWORD", "ADMIN_TOKEN", "SOURCE_GENERIC_SECRET", "SANDBOX_TOKEN", "SANDBOX_SCIM_TOKEN", "ALERT_SLACK_URL", "ALERT_WEBHOOK_SECRET", "ROSTER_AUTHORIZATION", "EVIDENCE_SIGNING_KEY"}

// Load reads the environment into c. Every secret may come from a file named by
// JML_<NAME>_FILE. Errors name the variable.
func Load() (Common, error) {
	if err := checkAdminVars(); err != nil {
		return Common{}, err
	}
	for _, name := range secretVars {
		if err := fromFile(Prefix + "_" + name); err != nil {
			return Common{}, err
		}
	}
	if v, set := os.LookupEnv(Prefix + "_ADMIN_TOKEN"); set && strings.TrimSpace(v) == "" {
		return Common{}, errors.New("config: JML_ADMIN_TOKEN (or the file JML_ADMIN_TOKEN_FILE names) is empty: an empty admin token is never accepted; unset it")
	}
	var c Common
	if err := envconfig.Process(Prefix, &c); err != nil {
		return Common{}, fmt.Errorf("config: %w", err)
	}
	if c.NATSPort < 0 || c.NATSPort > 65535 {
		return Common{}, errors.New("config: JML_NATS_PORT must be a TCP port (1-65535), or 0 for a random one")
	}
	if c.MaxBodyBytes <= 0 {
		return Common{}, errors.New("config: JML_MAX_BODY_BYTES must be positive")
	}
	if c.MaxClockSkew <= 0 || c.MaxClockSkew > time.Hour {
		return Common{}, errors.New("config: JML_MAX_CLOCK_SKEW must be positive and at most 1h")
	}
	if c.AuditPoll != 0 && (c.AuditPoll < time.Second || c.AuditPoll > time.Hour) {
		return Common{}, errors.New("config: JML_AUDIT_POLL must be between 1s and 1h, or 0 to turn the audit-log follower off")
	}
	if c.EvidenceAnchorEvery < 10*time.Second || c.EvidenceAnchorEvery > 24*time.Hour {
		return Common{}, errors.New("config: JML_EVIDENCE_ANCHOR_EVERY must be between 10s and 24h")
	}
	if _, err := state.NewIDSpaces(c.SharedIDSpace); err != nil {
		return Common{}, fmt.Errorf("config: JML_SHARED_ID_SPACE: %w", err)
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return Common{}, errors.New("config: JML_PUBLIC_URL must be an http(s) URL, e.g. https://jml.example.com")
		}
		c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	}
	return c, nil
}

// IDSpaces are the id spaces JML_SHARED_ID_SPACE declares (validated by Load).
func (c Common) IDSpaces() state.IDSpaces {
	s, _ := state.NewIDSpaces(c.SharedIDSpace)
	return s
}

// checkAdminVars refuses admin credential variables that are set but empty:
// they never mean "no authentication".
func checkAdminVars() error {
	for _, name := range []string{"_ADMIN_TOKEN_FILE", "_ADMIN_TOKENS_FILE"} {
		if v, set := os.LookupEnv(Prefix + name); set && strings.TrimSpace(v) == "" {
			return fmt.Errorf("config: %s%s is set but empty; unset it or name a file", Prefix, name)
		}
	}
	return nil
}

// fromFile sets NAME from the file NAME_FILE points to, when NAME is unset.
func fromFile(name string) error {
	path, ok := os.LookupEnv(name + "_FILE")
	if !ok || path == "" {
		return nil
	}
	if _, set := os.LookupEnv(name); set {
		return fmt.Errorf("config: both %s and %s_FILE are set; keep one", name, name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %s_FILE: %w", name, err)
	}
	return os.Setenv(name, strings.TrimRight(string(b), "\r\n"))
}

// SentryConfigured reports whether any JML_SENTRY_* variable is set (then the
// sandbox is not started, and a missing token is an error).
func SentryConfigured() bool {
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, Prefix+"_SENTRY_") {
			return true
		}
	}
	return false
}

// CheckSentry validates the JML_SENTRY_* group when it is used.
func (c Common) CheckSentry() error {
	if c.SentryToken == "" {
		return errors.New("config: JML_SENTRY_TOKEN is required when any JML_SENTRY_* variable is set (it is never replaced by the sandbox)")
	}
	if c.SentryOrg == "" {
		return errors.New("config: JML_SENTRY_ORG is required when JML_SENTRY_TOKEN is set")
	}
	return nil
}

// SentryBaseURL is JML_SENTRY_URL or https://sentry.io.
func (c Common) SentryBaseURL() string {
	if c.SentryURL == "" {
		return "https://sentry.io"
	}
	return c.SentryURL
}

// Streams sizes the JetStream streams and buckets.
func (c Common) Streams() events.StreamOptions {
	return events.StreamOptions{Replicas: c.StreamReplicas, MaxAge: c.EventsMaxAge}
}

// RedisOptions selects single node, Sentinel or Cluster.
func (c Common) RedisOptions() redisstate.Options {
	return redisstate.Options{URL: c.RedisURL, Addrs: c.RedisAddrs, MasterName: c.RedisMasterName, Password: c.RedisPassword, Prefix: c.RedisPrefix}
}

// Policy loads JML_POLICY_FILE, or the defaults when it is unset.
func (c Common) Policy() (policy.Policy, error) {
	if c.PolicyFile == "" {
		return policy.Default(), nil
	}
	p, err := policy.Load(c.PolicyFile)
	if err != nil {
		return policy.Policy{}, fmt.Errorf("JML_POLICY_FILE: %w", err)
	}
	return p, nil
}

// Secrets splits a list of active secrets separated by commas or newlines. A
// secret may contain spaces (e.g. "Basic dXNlcjpwYXNz").
func Secrets(v string) []string {
	var out []string
	for _, s := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Sources reads every provider's JML_SOURCE_<NAME>_* variables (secrets
// also from <NAME>_FILE; several active secrets separated by commas or
// newlines), for each provider in the registry (providers.All). A source
// without a secret is disabled.
func Sources() (map[string]providers.Settings, error) {
	out := map[string]providers.Settings{}
	for _, name := range providers.Names() {
		prefix := Prefix + "_SOURCE_" + strings.ToUpper(name)
		for _, v := range []string{prefix + "_SECRET", prefix + "_API_TOKEN"} {
			if err := fromFile(v); err != nil {
				return nil, err
			}
		}
		se := providers.Settings{Secrets: Secrets(os.Getenv(prefix + "_SECRET")), APIURL: os.Getenv(prefix + "_API_URL"), APIToken: os.Getenv(prefix + "_API_TOKEN")}
		if (se.APIURL == "") != (se.APIToken == "") {
			return nil, fmt.Errorf("config: %s_API_URL and %s_API_TOKEN go together", prefix, prefix)
		}
		if name == "scim" {
			se.Inactive = os.Getenv(prefix + "_INACTIVE")
			if se.Inactive != "" && se.Inactive != "suspend" && se.Inactive != "leaver" {
				return nil, fmt.Errorf("config: %s_INACTIVE=%q: want suspend or leaver", prefix, se.Inactive)
			}
		}
		out[name] = se
	}
	return out, nil
}

// Alerts builds the alert notifier from JML_ALERT_*; nil when none is set.
func (c Common) Alerts(log *slog.Logger, mp metric.MeterProvider) (*alert.Notifier, error) {
	var sinks []alert.Sink
	if c.AlertSlackURL != "" {
		s, err := alert.NewSlack(c.AlertSlackURL, nil)
		if err != nil {
			return nil, fmt.Errorf("JML_ALERT_SLACK_URL: %w", err)
		}
		sinks = append(sinks, s)
	}
	if c.AlertWebhookURL != "" {
		w, err := alert.NewWebhook(c.AlertWebhookURL, Secrets(c.AlertWebhookSecret), nil, nil)
		if err != nil {
			return nil, fmt.Errorf("JML_ALERT_WEBHOOK_URL/_SECRET: %w", err)
		}
		sinks = append(sinks, w)
	}
	if len(sinks) == 0 {
		return nil, nil
	}
	return alert.New(alert.Options{Sinks: sinks, Logger: log, MeterProvider: mp})
}

// Reconcile is the reconcile wiring from the environment (JML_ROSTER_*).
func (c Common) Reconcile() app.ReconcileOptions {
	return app.ReconcileOptions{Roster: app.RosterFetch{URL: c.RosterURL, Authorization: c.RosterAuthorization, Full: c.RosterFull,
		Every: c.RosterEvery}, RosterMaxBytes: c.RosterMaxBytes}
}

// OktaCatchUp builds the Okta source used to replay the System Log when both
// the hook secret and API access are configured; nil otherwise.
func OktaCatchUp(m map[string]providers.Settings, log *slog.Logger) (*okta.Source, error) {
	se := m["okta"]
	if len(se.Secrets) == 0 || se.APIURL == "" {
		return nil, nil
	}
	o, err := okta.NewSource(sources.Config{Secrets: se.Secrets, APIURL: se.APIURL, APIToken: se.APIToken, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("JML_SOURCE_OKTA_*: %w", err)
	}
	return o, nil
}
