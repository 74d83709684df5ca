package okta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/okta/oktaapi"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
)

// oktaMapping is what each acted-on Okta event type becomes. Everything else is
// acknowledged and counted as ignored.
var oktaMapping = map[string]struct {
	typ    events.Type
	status events.Status
}{
	"user.lifecycle.create":           {events.Joiner, events.Active},
	"user.lifecycle.activate":         {events.Update, events.Active},
	"user.lifecycle.reactivate":       {events.Rehire, events.Active},
	"user.lifecycle.unsuspend":        {events.Update, events.Active},
	"user.lifecycle.suspend":          {events.Suspend, events.Suspended},
	"user.lifecycle.deactivate":       {events.Leaver, events.Terminated},
	"user.lifecycle.delete.initiated": {events.Leaver, events.Terminated},
	"user.lifecycle.delete.completed": {events.Leaver, events.Terminated},
	"user.account.update_profile":     {events.Update, ""},
	"group.user_membership.add":       {events.Update, ""},
	"group.user_membership.remove":    {events.Update, ""},
}

// EventTypes lists the Okta event types the source acts on: subscribe the
// event hook to these, and use them as the System Log catch-up filter.
func EventTypes() []string {
	out := make([]string, 0, len(oktaMapping))
	for t := range oktaMapping {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Source is the Okta Event Hooks source. Okta signs nothing: every request carries
// the Authorization header value configured on the hook, compared here in
// constant time with each active secret.
//
// With API access (sources.Config.APIURL and APIToken), profile updates are completed by
// re-reading the user, group-membership events carry the user's full group list
// (re-read), and CatchUp replays System Log events missed during an outage.
type Source struct {
	secrets [][32]byte
	api     *oktaapi.Client
	logger  *slog.Logger
	now     func() time.Time
	// enrichBudget bounds the API calls of one delivery (Okta waits 3 s).
	enrichBudget time.Duration
}

var (
	_ sources.Source     = (*Source)(nil)
	_ sources.Handshaker = (*Source)(nil)
)

// NewSource returns the Okta source. cfg.Secrets are full Authorization header
// values ("Basic …" or any string), several during rotation.
func NewSource(cfg sources.Config) (*Source, error) {
	o := &Source{logger: cfg.Logger, now: cfg.Now, enrichBudget: 1500 * time.Millisecond}
	for _, s := range cfg.Secrets {
		if s = strings.TrimSpace(s); s != "" {
			o.secrets = append(o.secrets, sha256.Sum256([]byte(s)))
		}
	}
	if len(o.secrets) == 0 {
		return nil, errors.New("okta source: at least one secret (the Authorization header value) is required")
	}
	if (cfg.APIURL == "") != (cfg.APIToken == "") {
		return nil, errors.New("okta source: set both the API URL and the API token, or neither")
	}
	if cfg.APIURL != "" {
		c, err := oktaapi.New(cfg.APIURL, cfg.APIToken, nil)
		if err != nil {
			return nil, fmt.Errorf("okta source: %w", err)
		}
		o.api = c
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o, nil
}

// Name implements sources.Source.
func (o *Source) Name() string { return "okta" }

// SuccessStatus: Okta expects 200 (or 204) to an event delivery.
func (o *Source) SuccessStatus() int { return 200 }

func (o *Source) authorized(r *http.Request) bool {
	got := sha256.Sum256([]byte(strings.TrimSpace(r.Header.Get("Authorization"))))
	ok := 0
	for _, want := range o.secrets {
		ok |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	return ok == 1
}

// Handshake answers Okta's one-time verification GET: 200 {"verification": <the
// X-Okta-Verification-Challenge value>}. Okta sends the configured
// Authorization header on that GET too ("Okta provides it in every request";
// Okta's support article on verification failures shows it), so it must match:
// an unauthenticated challenge would let anyone's Okta org verify a hook
// pointing at us.
func (o *Source) Handshake(w http.ResponseWriter, r *http.Request, _ []byte) bool {
	if r.Method != http.MethodGet {
		return false
	}
	challenge := r.Header.Get("X-Okta-Verification-Challenge")
	if challenge == "" {
		return false
	}
	w.Header().Set("Content-Type", "application/json")
	if !o.authorized(r) {
		o.logger.WarnContext(r.Context(), "okta verification refused", "reason", "authorization header does not match", "remote", r.RemoteAddr)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"unauthorized"}` + "\n"))
		return true
	}
	if len(challenge) > 1024 {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"verification challenge longer than 1024 bytes"}` + "\n"))
		return true
	}
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(map[string]string{"verification": challenge})
	return true
}

// oktaEnvelope is an event hook delivery (CloudEvents 0.1-like).
type oktaEnvelope struct {
	EventType string `json:"eventType"`
	EventID   string `json:"eventId"`
	EventTime string `json:"eventTime"`
	Data      *struct {
		Events []json.RawMessage `json:"events"`
	} `json:"data"`
}

// Authenticate implements sources.Authenticator: the Authorization header, before the
// body is read.
func (o *Source) Authenticate(r *http.Request) error {
	if !o.authorized(r) {
		return fmt.Errorf("%w: authorization header does not match", sources.ErrUnauthorized)
	}
	return nil
}

// PartialDelivery implements sources.PartialDelivery: Okta does not retry a 4xx, so an
// event that fails the receiver's checks is dropped, not the whole delivery.
func (o *Source) PartialDelivery() bool { return true }

// Parse implements sources.Source.
func (o *Source) Parse(r *http.Request, body []byte, now time.Time) (sources.Parsed, error) {
	if err := o.Authenticate(r); err != nil {
		return sources.Parsed{}, err
	}
	env, logs, bad, err := parseOktaDelivery(body)
	if err != nil {
		return sources.Parsed{}, err
	}
	if bad > 0 {
		o.logger.WarnContext(r.Context(), "okta delivery has malformed events; they are ignored", "event_id", env.EventID, "malformed", bad)
	}
	fallback := now
	if t, err := time.Parse(time.RFC3339, env.EventTime); err == nil {
		fallback = t
	}
	p := o.events(r.Context(), logs, fallback, now, body)
	p.Ignored += bad
	return p, nil
}

// parseOktaDelivery decodes the envelope and each LogEvent. Malformed elements
// are counted, not fatal: Okta does not retry a 4xx, so failing the whole
// delivery would lose its good events.
func parseOktaDelivery(body []byte) (oktaEnvelope, []oktaapi.LogEvent, int, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return oktaEnvelope{}, nil, 0, fmt.Errorf("%w: body must be a JSON object", events.ErrInvalid)
	}
	var env oktaEnvelope
	if err := json.Unmarshal(trimmed, &env); err != nil {
		return oktaEnvelope{}, nil, 0, fmt.Errorf("%w: malformed JSON", events.ErrInvalid)
	}
	if env.Data == nil || env.Data.Events == nil {
		return oktaEnvelope{}, nil, 0, fmt.Errorf("%w: data.events is required", events.ErrInvalid)
	}
	logs := make([]oktaapi.LogEvent, 0, len(env.Data.Events))
	bad := 0
	for _, raw := range env.Data.Events {
		var le oktaapi.LogEvent
		if err := json.Unmarshal(raw, &le); err != nil {
			bad++
			continue
		}
		logs = append(logs, le)
	}
	return env, logs, bad, nil
}

// CatchUp lists the acted-on System Log events published since the given time
// (GET /api/v1/logs) and maps them like deliveries, with the same event ids
// (the LogEvent uuid), so replaying events the hook did deliver is deduplicated
// by JetStream and the worker. It needs API access.
func (o *Source) CatchUp(ctx context.Context, since time.Time) (sources.Parsed, error) {
	if o.api == nil {
		return sources.Parsed{}, errors.New("okta catch-up: no API URL and token configured")
	}
	logs, err := o.api.Logs(ctx, oktaapi.LogQuery{Since: since, Filter: oktaapi.EventTypeFilter(EventTypes()...)})
	if err != nil {
		return sources.Parsed{}, fmt.Errorf("okta catch-up: %w", err)
	}
	now := o.now()
	return o.events(ctx, logs, now, now, nil), nil
}

// Events maps LogEvents to events: what Parse does after authentication, for
// LogEvents from another channel (the System Log). fallback is the time used
// for events without a valid published time.
func (o *Source) Events(ctx context.Context, logs []oktaapi.LogEvent, fallback, now time.Time) sources.Parsed {
	return o.events(ctx, logs, fallback, now, nil)
}

func (o *Source) events(ctx context.Context, logs []oktaapi.LogEvent, fallback, now time.Time, body []byte) sources.Parsed {
	var p sources.Parsed
	var en *oktaEnricher
	if o.api != nil {
		ectx, cancel := context.WithTimeout(ctx, o.enrichBudget)
		defer cancel()
		en = &oktaEnricher{ctx: ectx, api: o.api, users: map[string]*oktaapi.User{}, groups: map[string][]string{}, logger: o.logger}
	}
	for i, le := range logs {
		evs, ok := o.mapLogEvent(le, i, fallback, now, body)
		if !ok {
			p.Ignored++
			continue
		}
		for _, ev := range evs {
			if en != nil {
				en.enrich(&ev, le.EventType)
			}
			if ev.Person.Email == "" {
				o.logger.WarnContext(ctx, "okta event names a user without an email address; ignored",
					"event_id", ev.ID, "event_type", le.EventType, "okta_id", ev.Person.Attributes["okta_id"])
				p.Ignored++
				continue
			}
			p.Events = append(p.Events, ev)
		}
	}
	return p
}

// mapLogEvent turns one LogEvent into events (one per User target; normally
// one). ok is false for event types, outcomes or shapes the daemon ignores,
// such as Admin Console previews whose actor and target are null.
func (o *Source) mapLogEvent(le oktaapi.LogEvent, index int, fallback, now time.Time, body []byte) ([]events.Event, bool) {
	m, known := oktaMapping[le.EventType]
	if !known {
		return nil, false
	}
	if le.Outcome != nil && le.Outcome.Result != "" && !strings.EqualFold(le.Outcome.Result, "SUCCESS") {
		return nil, false
	}
	var users []oktaapi.Ref
	var group *oktaapi.Ref
	for i, t := range le.Target {
		switch {
		case strings.EqualFold(t.Type, "User") && t.ID != "":
			users = append(users, t)
		case strings.EqualFold(t.Type, "UserGroup") && group == nil:
			group = &le.Target[i]
		}
	}
	if len(users) == 0 {
		return nil, false
	}
	isGroupEvent := strings.HasPrefix(le.EventType, "group.user_membership.")
	if isGroupEvent && (group == nil || (group.DisplayName == "" && group.ID == "")) {
		return nil, false
	}
	occurred := fallback.UTC()
	if t, err := time.Parse(time.RFC3339, le.Published); err == nil {
		occurred = t.UTC()
	}
	id := le.UUID
	if id == "" {
		// No per-event id: derive one from the delivery so a retried delivery
		// gets the same ids.
		h := sha256.Sum256(append(append([]byte(le.EventType+"\x00"+le.Published+"\x00"), body...), byte(index)))
		id = "sha256:" + hex.EncodeToString(h[:16])
	}
	out := make([]events.Event, 0, len(users))
	for _, u := range users {
		pe := events.Person{Status: m.status, Attributes: map[string]string{"okta_id": u.ID}}
		if u.AlternateID != "" {
			pe.Attributes["okta.login"] = u.AlternateID
		}
		if oktaIsEmail(u.AlternateID) {
			pe.Email = u.AlternateID
		}
		pe.Name = strings.TrimSpace(u.DisplayName)
		if isGroupEvent {
			name := group.DisplayName
			if name == "" {
				name = group.ID
			}
			// A single membership event does not carry the full group set, and
			// Person.Groups replaces the stored set: record the change as a
			// delta (the other key cleared, since attributes merge) and leave
			// Groups unset, unless the oktaEnricher re-reads the full list.
			add, remove := name, ""
			if le.EventType == "group.user_membership.remove" {
				add, remove = "", name
			}
			pe.Attributes["okta.group.add"] = add
			pe.Attributes["okta.group.remove"] = remove
			pe.Attributes["okta.group.id"] = group.ID
		}
		evID := id
		if len(users) > 1 {
			evID = id + ":" + u.ID
		}
		out = append(out, events.Event{
			ID: evID, Source: "okta", Type: m.typ, OccurredAt: occurred, ReceivedAt: now.UTC(), Person: pe,
		})
	}
	return out, true
}

func oktaIsEmail(s string) bool {
	if s == "" || len(s) > 320 {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == ""
}

// oktaEnricher re-reads users and group lists through the Okta API within one
// delivery's budget, each user at most once. Failures leave the thin event.
type oktaEnricher struct {
	ctx    context.Context
	api    *oktaapi.Client
	users  map[string]*oktaapi.User // nil entry: read failed
	groups map[string][]string      // nil entry: read failed
	logger *slog.Logger
}

func (e *oktaEnricher) user(id string) *oktaapi.User {
	if u, ok := e.users[id]; ok {
		return u
	}
	u, err := e.api.User(e.ctx, id)
	if err != nil {
		e.logger.WarnContext(e.ctx, "okta user re-read failed; using the event as delivered", "okta_id", id, "err", err)
		e.users[id] = nil
		return nil
	}
	e.users[id] = &u
	return &u
}

func (e *oktaEnricher) groupNames(id string) ([]string, bool) {
	if g, ok := e.groups[id]; ok {
		return g, g != nil
	}
	gs, err := e.api.UserGroups(e.ctx, id)
	if err != nil {
		e.logger.WarnContext(e.ctx, "okta group re-read failed; sending the membership delta only", "okta_id", id, "err", err)
		e.groups[id] = nil
		return nil, false
	}
	names := []string{}
	for _, g := range gs {
		if g.Type == "BUILT_IN" || g.Profile.Name == "" { // "Everyone"
			continue
		}
		names = append(names, g.Profile.Name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	e.groups[id] = names
	return names, true
}

// enrich completes an event from the API: the email when the login is not an
// address (any event), the profile on update_profile, the full group list on
// membership changes. IdPs are not authoritative for HR attributes, so the
// profile's department and title go to "okta."-prefixed attributes.
func (e *oktaEnricher) enrich(ev *events.Event, eventType string) {
	oktaID := ev.Person.Attributes["okta_id"]
	profile := eventType == "user.account.update_profile"
	if profile || ev.Person.Email == "" {
		if u := e.user(oktaID); u != nil {
			pr := u.Profile
			if oktaIsEmail(pr.Email) {
				ev.Person.Email = pr.Email
			}
			if profile {
				if n := strings.TrimSpace(pr.DisplayName); n != "" {
					ev.Person.Name = n
				} else if n := strings.TrimSpace(pr.FirstName + " " + pr.LastName); n != "" {
					ev.Person.Name = n
				}
				set := func(k, v string) {
					if v = strings.TrimSpace(v); v != "" {
						ev.Person.Attributes[k] = v
					}
				}
				set("okta.status", u.Status)
				set("okta.department", pr.Department)
				set("okta.title", pr.Title)
				set("okta.division", pr.Division)
				set("okta.organization", pr.Organization)
				set("okta.costCenter", pr.CostCenter)
				set("okta.employeeNumber", pr.EmployeeNumber)
				set("okta.managerId", pr.ManagerID)
				set("okta.manager", pr.Manager)
			}
		}
	}
	if strings.HasPrefix(eventType, "group.user_membership.") {
		if names, ok := e.groupNames(oktaID); ok {
			ev.Person.Groups = names
		}
	}
}
