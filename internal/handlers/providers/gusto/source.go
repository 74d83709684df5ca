package gusto

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// KeyStore keeps the signing key Gusto hands over in its verification POST
// (the verification_token), and the operator's arming that allows it. The
// receiver's wiring implements it (jsstate.SourceKeys); the token is a secret:
// implementations must not log it.
type KeyStore interface {
	// ClaimVerificationToken stores token durably (it must survive a restart
	// and be readable by every receiver replica) only while an operator has
	// armed the source, and disarms it in the same atomic write: one arming,
	// one key. A token already stored is accepted again. saved is false when
	// the source is not armed. An error makes the handshake answer 503.
	ClaimVerificationToken(ctx context.Context, token string) (saved bool, err error)
	// ArmedUntil is the end of the current arming (zero or past: not armed).
	ArmedUntil(ctx context.Context) (time.Time, error)
}

// KeyLoader is optionally implemented by a KeyStore shared by several receiver
// replicas: the Gusto source reloads the stored tokens (at most every
// ReloadInterval) when a signature does not verify, so a token saved by
// another replica is picked up without a restart.
type KeyLoader interface {
	VerificationTokens(ctx context.Context) ([]string, error)
}

// ReloadInterval is the minimum time between two KeyLoader reads.
const ReloadInterval = 10 * time.Second

// Source verifies X-Gusto-Signature (lowercase hex HMAC-SHA256 of the raw body,
// keyed with the subscription's verification_token) and parses Gusto's thin
// events {uuid, event_type, resource_type, resource_uuid, entity_type,
// entity_uuid, timestamp}. The event id is uuid (sent since February 2024), else
// the body's sha256.
//
// The key arrives in the verification POST ({"verification_token": …}) Gusto
// sends when the subscription is created. The first caller never sets it: the
// route is closed (Gate: 404, as for a source that is not enabled) while the
// source has no key (no JML_SOURCE_GUSTO_SECRET, nothing in the KeyStore) and
// is not armed. An operator arms it (`jml sources arm gusto`: a short window,
// fleet-wide, for exactly one verification POST); that POST's token is claimed
// from the KeyStore, which disarms it, and the source starts verifying with it
// and answers 200 (the operator then confirms the subscription with PUT
// /v1/webhook_subscriptions/{uuid}/verify). Outside an arming, a verification
// POST with a known token is answered 200 and one with another token 401 (404
// while the route is closed). To move to a new subscription, arm again or
// configure its token.
type Source struct {
	store KeyStore
	log   *slog.Logger
	now   func() time.Time

	mu         sync.Mutex
	tokens     []string
	mac        *signature.HMAC // nil while unconfigured
	lastReload time.Time
	armedUntil time.Time // cached KeyStore.ArmedUntil
	armedRead  time.Time // when armedUntil was read
}

var (
	_ sources.Source     = (*Source)(nil)
	_ sources.Handshaker = (*Source)(nil)
	_ sources.Gate       = (*Source)(nil)
)

// gustoArmedReread is how old the cached arming may be when the closed route
// is asked for: an attacker's requests cost at most one KV read per second.
const gustoArmedReread = time.Second

// NewSource returns the Gusto source. cfg.Secrets are known verification tokens
// (may be empty); store receives a token from the verification POST and may be
// nil only when cfg.Secrets is not empty.
func NewSource(cfg sources.Config, store KeyStore) (*Source, error) {
	if len(cfg.Secrets) == 0 && store == nil {
		return nil, errors.New("gusto source: no secret and no key store: the verification token would have nowhere to go")
	}
	g := &Source{store: store, log: sources.LoggerOf(cfg), now: cfg.Now}
	if g.now == nil {
		g.now = time.Now
	}
	if len(cfg.Secrets) > 0 {
		if err := g.setTokens(cfg.Secrets); err != nil {
			return nil, fmt.Errorf("gusto source: %w", err)
		}
	}
	return g, nil
}

// Name implements sources.Source.
func (g *Source) Name() string { return "gusto" }

// Configured reports whether the source has a signing key.
func (g *Source) Configured() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mac != nil
}

// Open implements sources.Gate: the route exists once a key is known (configured, or
// stored by any replica) or while an operator has armed the source.
func (g *Source) Open(ctx context.Context) bool {
	if g.Configured() {
		return true
	}
	if g.store == nil {
		return false
	}
	g.reload(ctx, true)
	if g.Configured() {
		return true
	}
	g.mu.Lock()
	now := g.now()
	if now.Sub(g.armedRead) < gustoArmedReread {
		armed := now.Before(g.armedUntil)
		g.mu.Unlock()
		return armed
	}
	g.armedRead = now
	g.mu.Unlock()
	until, err := g.store.ArmedUntil(ctx)
	if err != nil {
		g.log.WarnContext(ctx, "gusto key store read failed", "err", err)
		return false
	}
	g.mu.Lock()
	g.armedUntil = until
	g.mu.Unlock()
	return now.Before(until)
}

// call with g.mu held, or before g is shared.
func (g *Source) setTokens(tokens []string) error {
	mac, err := signature.NewHMAC(sha256.New, signature.Hex, tokens)
	if err != nil {
		return err
	}
	g.tokens, g.mac = append([]string(nil), tokens...), mac
	return nil
}

type gustoVerification struct {
	VerificationToken *string         `json:"verification_token"`
	EventType         json.RawMessage `json:"event_type"`
}

// verificationToken returns the token when body is a verification POST.
func verificationToken(body []byte) (string, bool) {
	var v gustoVerification
	if json.Unmarshal(body, &v) != nil || v.VerificationToken == nil || v.EventType != nil {
		return "", false
	}
	return strings.TrimSpace(*v.VerificationToken), true
}

// Handshake implements sources.Handshaker for the verification POST.
func (g *Source) Handshake(w http.ResponseWriter, r *http.Request, body []byte) bool {
	if r.Method != http.MethodPost {
		return false
	}
	token, ok := verificationToken(body)
	if !ok {
		return false
	}
	ctx := r.Context()
	if token == "" || len(token) > 512 {
		writeHandshake(w, http.StatusBadRequest, `{"error":"verification_token is empty or too long"}`)
		return true
	}
	g.reload(ctx, true)
	g.mu.Lock()
	for _, t := range g.tokens {
		if signature.Equal(t, token) {
			g.mu.Unlock()
			writeHandshake(w, http.StatusOK, `{}`)
			return true
		}
	}
	configured := g.mac != nil
	g.mu.Unlock()
	if g.store == nil {
		g.log.WarnContext(ctx, "gusto verification POST with an unknown token refused: no key store to arm")
		writeHandshake(w, http.StatusUnauthorized, `{"error":"unauthorized"}`)
		return true
	}
	saved, err := g.store.ClaimVerificationToken(ctx, token)
	if err != nil {
		g.log.ErrorContext(ctx, "gusto verification token could not be stored", "err", err)
		w.Header().Set("Retry-After", "5")
		writeHandshake(w, http.StatusServiceUnavailable, `{"error":"could not store the verification token, retry later"}`)
		return true
	}
	if !saved {
		g.log.WarnContext(ctx, "gusto verification POST refused: the source is not armed; run `jml sources arm gusto` before creating the subscription, or set JML_SOURCE_GUSTO_SECRET",
			"remote", r.RemoteAddr)
		if !configured {
			http.NotFound(w, r)
			return true
		}
		writeHandshake(w, http.StatusUnauthorized, `{"error":"unauthorized"}`)
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armedUntil = time.Time{} // claimed: disarmed fleet-wide
	tokens := append(append([]string(nil), g.tokens...), token)
	if err := g.setTokens(tokens); err != nil {
		writeHandshake(w, http.StatusBadRequest, `{"error":"unusable verification_token"}`)
		return true
	}
	g.log.InfoContext(ctx, "gusto verification token stored and the arming used up; confirm the subscription with PUT /v1/webhook_subscriptions/{uuid}/verify")
	writeHandshake(w, http.StatusOK, `{}`)
	return true
}

func writeHandshake(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body + "\n"))
}

// reload reads the KeyStore's tokens when it can list them (KeyLoader) and the last read is
// older than ReloadInterval (or force is set and the source is unconfigured).
func (g *Source) reload(ctx context.Context, force bool) {
	kl, ok := g.store.(KeyLoader)
	if !ok {
		return
	}
	g.mu.Lock()
	now := g.now()
	elapsed := now.Sub(g.lastReload)
	due := elapsed >= ReloadInterval || (force && g.mac == nil && elapsed >= time.Second)
	if !due {
		g.mu.Unlock()
		return
	}
	g.lastReload = now
	g.mu.Unlock()
	stored, err := kl.VerificationTokens(ctx)
	if err != nil {
		g.log.WarnContext(ctx, "gusto key store read failed", "err", err)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	merged := append([]string(nil), g.tokens...)
	for _, s := range stored {
		s = strings.TrimSpace(s)
		if s != "" && !contains(merged, s) {
			merged = append(merged, s)
		}
	}
	if len(merged) > len(g.tokens) {
		_ = g.setTokens(merged)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

type gustoWire struct {
	UUID         string         `json:"uuid"`
	EventType    *string        `json:"event_type"`
	ResourceType string         `json:"resource_type"`
	ResourceUUID string         `json:"resource_uuid"`
	EntityType   string         `json:"entity_type"`
	EntityUUID   string         `json:"entity_uuid"`
	EntityID     sources.FlexID `json:"entity_id"`
	Timestamp    sources.FlexID `json:"timestamp"`
}

func (g *Source) verify(r *http.Request, body []byte) error {
	sig := r.Header.Get("X-Gusto-Signature")
	g.mu.Lock()
	mac := g.mac
	g.mu.Unlock()
	if mac != nil {
		if err := mac.Verify(sig, body); err == nil || errors.Is(err, signature.ErrMissingSignature) || errors.Is(err, signature.ErrMalformed) {
			return err
		}
	}
	// Unconfigured, or the signature matches no known key: another replica may
	// have stored a newer token.
	g.reload(r.Context(), false)
	g.mu.Lock()
	mac = g.mac
	g.mu.Unlock()
	if mac == nil {
		return errors.New("gusto source has no verification token yet: only the verification POST is accepted")
	}
	return mac.Verify(sig, body)
}

// Parse implements sources.Source.
func (g *Source) Parse(r *http.Request, body []byte, now time.Time) (sources.Parsed, error) {
	if err := g.verify(r, body); err != nil {
		return sources.Parsed{}, fmt.Errorf("%w: %w", sources.ErrUnauthorized, err)
	}
	var w gustoWire
	if err := sources.DecodeObject(body, &w); err != nil {
		return sources.Parsed{}, err
	}
	if w.EventType == nil || strings.TrimSpace(*w.EventType) == "" {
		return sources.Parsed{}, sources.Invalidf("event_type is required")
	}
	if !strings.EqualFold(w.EntityType, "Employee") {
		return sources.Parsed{Ignored: 1}, nil
	}
	typ, status, ok := gustoType(*w.EventType)
	if !ok {
		return sources.Parsed{Ignored: 1}, nil
	}
	id := strings.TrimSpace(w.UUID)
	if id == "" {
		id = sources.BodyID(body)
	}
	p := events.Person{ID: strings.TrimSpace(w.EntityUUID)}
	if p.ID == "" {
		p.ID = string(w.EntityID) // older app-integration payloads: numeric ids only
	}
	if w.ResourceUUID != "" {
		p.Attributes = map[string]string{"company_uuid": w.ResourceUUID}
	}
	occurred, _ := sources.ParseTime(string(w.Timestamp))
	ev, err := sources.NewEvent(g.Name(), id, typ, status, occurred, now, p)
	if err != nil {
		return sources.Parsed{}, err
	}
	return sources.Parsed{Events: []events.Event{ev}}, nil
}

// gustoType maps Gusto's employee events. employee.terminated means a
// termination was entered (its date may be in the future): a leaver whose status
// the worker re-reads; employee.terminated_effective is the moment it applies.
func gustoType(name string) (events.Type, events.Status, bool) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "employee.created", "employee.onboarded", "employee.marked_for_self_onboarding", "employee.self_onboarding_completed":
		return events.Joiner, "", true
	case "employee.updated":
		return events.Update, "", true
	case "employee.terminated":
		return events.Leaver, "", true
	case "employee.terminated_effective":
		return events.Leaver, events.Terminated, true
	case "employee.termination_cancelled":
		return events.Update, events.Active, true
	case "employee.rehired":
		return events.Rehire, "", true
	case "employee.rehire_effective":
		return events.Rehire, events.Active, true
	case "employee.rehire_cancelled":
		return events.Update, "", true
	case "employee.deleted":
		return events.Leaver, events.Terminated, true
	}
	return "", "", false
}
