package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Kind names what happened. The set is closed so receivers can route on it.
type Kind string

// Alert kinds.
const (
	KindBrakeHalted   Kind = "brake_halted"   // removals beyond a brake threshold wait for approval
	KindDLQGrowth     Kind = "dlq_growth"     // messages are being dead-lettered
	KindNeedsHuman    Kind = "needs_human"    // a change the service user cannot make (e.g. an Owner leaver)
	KindDisputed      Kind = "disputed"       // several Sentry members match one person's e-mail
	KindTokenRejected Kind = "token_rejected" // Sentry answers 401/403 to JML_SENTRY_TOKEN
	KindOutOfBand     Kind = "out_of_band"    // someone changed a person's Sentry access by hand (reverted, reported or adopted)
	KindAuditGap      Kind = "audit_gap"      // the audit-log follower lost entries (or no longer understands them); a full reconcile was requested
)

// Kinds lists every valid Kind.
var Kinds = []Kind{KindBrakeHalted, KindDLQGrowth, KindNeedsHuman, KindDisputed, KindTokenRejected, KindOutOfBand, KindAuditGap}

// Severity of an alert.
type Severity string

// Severities. An empty Severity is filled from DefaultSeverity.
const (
	SeverityCritical Severity = "critical"
	SeverityWarning  Severity = "warning"
	SeverityInfo     Severity = "info"
)

// DefaultSeverity is the severity of a kind when the caller leaves it empty.
func DefaultSeverity(k Kind) Severity {
	switch k {
	case KindTokenRejected, KindBrakeHalted:
		return SeverityCritical
	default:
		return SeverityWarning
	}
}

// Alert is one notification. Person is the e-mail concerned, or empty for
// fleet-wide alerts. Details carry plain context (counts, member ids, plan ids);
// values whose key or shape suggests a credential are redacted before sending.
type Alert struct {
	Kind     Kind
	Severity Severity
	Summary  string
	Person   string
	Details  map[string]string
	At       time.Time
}

// ErrInvalidAlert is returned by Notify for an unknown kind or an empty summary.
var ErrInvalidAlert = errors.New("alert: invalid alert")

func (a Alert) validate() error {
	if !slices.Contains(Kinds, a.Kind) {
		return fmt.Errorf("%w: unknown kind %q", ErrInvalidAlert, a.Kind)
	}
	switch a.Severity {
	case SeverityCritical, SeverityWarning, SeverityInfo:
	default:
		return fmt.Errorf("%w: unknown severity %q", ErrInvalidAlert, a.Severity)
	}
	if strings.TrimSpace(a.Summary) == "" {
		return fmt.Errorf("%w: empty summary", ErrInvalidAlert)
	}
	return nil
}

// key identifies an alert for deduplication: everything but At.
func (a Alert) key() string {
	h := sha256.New()
	for _, s := range []string{string(a.Kind), string(a.Severity), a.Summary, strings.ToLower(a.Person)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	keys := make([]string, 0, len(a.Details))
	for k := range a.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{1})
		h.Write([]byte(a.Details[k]))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

const redacted = "[redacted]"

var (
	// secretKey matches detail keys that name a credential.
	secretKey = regexp.MustCompile(`(?i)(token|secret|password|passwd|authorization|api[_-]?key|credential|cookie|signature)`)
	// secretValue matches credential shapes: Sentry user/org/SCIM tokens, Standard
	// Webhooks secrets, HTTP auth schemes, URLs with user info, Slack hook URLs.
	secretValue = regexp.MustCompile(`(sntry[a-z]?_[A-Za-z0-9+/=_-]{8,}|whsec_[A-Za-z0-9+/=]{8,}|\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/-]*[0-9][A-Za-z0-9._~+/=-]*|[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@|hooks\.slack\.com/[^\s"]+|xox[abprs]-[A-Za-z0-9-]{8,})`)
)

// redact returns the text with credential-looking substrings replaced.
func redact(s string) string { return secretValue.ReplaceAllString(s, redacted) }

// sanitized returns a copy of a that is safe to send and log: severity filled in,
// At set, credential-looking details and substrings redacted.
func (a Alert) sanitized(now time.Time) Alert {
	if a.Severity == "" {
		a.Severity = DefaultSeverity(a.Kind)
	}
	if a.At.IsZero() {
		a.At = now
	}
	a.At = a.At.UTC()
	a.Summary = redact(a.Summary)
	a.Person = redact(a.Person)
	if len(a.Details) > 0 {
		d := make(map[string]string, len(a.Details))
		for k, v := range a.Details {
			if secretKey.MatchString(k) {
				v = redacted
			}
			d[k] = redact(v)
		}
		a.Details = d
	}
	return a
}
