package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// Evidence kinds of operator actions that change what will happen.
const (
	KindPendingCancelled = "pending_cancelled"
	KindUnresolvedLinked = "unresolved_linked"
)

// RunView is one reconcile run as `jml runs` lists it.
type RunView struct {
	ID         string         `json:"run_id"`
	Status     string         `json:"status"`
	Reason     string         `json:"reason,omitempty"`
	Trigger    string         `json:"trigger,omitempty"`
	StartedAt  time.Time      `json:"started_at"`
	FinishedAt time.Time      `json:"finished_at,omitzero"`
	ExpiresAt  time.Time      `json:"expires_at,omitzero"`
	ApprovedBy string         `json:"approved_by,omitempty"`
	Counts     map[string]int `json:"counts,omitempty"`
}

// Runs lists the stored reconcile runs: halted ones (waiting for an approval)
// first, then the newest; at most limit (0: all).
func (w *Worker) Runs(ctx context.Context, limit int) ([]RunView, error) {
	now := time.Now()
	out := []RunView{}
	for r, err := range w.records.Runs.List(ctx) {
		if err != nil {
			return nil, err
		}
		st := r.Status
		if r.Expired(now) {
			st = state.RunExpired
		}
		out = append(out, RunView{ID: r.ID, Status: st, Reason: r.Reason, Trigger: r.Trigger, StartedAt: r.StartedAt,
			FinishedAt: r.FinishedAt, ExpiresAt: r.ExpiresAt, ApprovedBy: r.ApprovedBy, Counts: r.Counts})
	}
	slices.SortFunc(out, func(a, b RunView) int {
		if (a.Status == state.RunHalted) != (b.Status == state.RunHalted) {
			if a.Status == state.RunHalted {
				return -1
			}
			return 1
		}
		return b.StartedAt.Compare(a.StartedAt)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// PendingView is one future-dated change as `jml pending` lists it.
type PendingView struct {
	ID          string    `json:"id"`
	Person      string    `json:"person"`
	Email       string    `json:"email,omitempty"`
	Field       string    `json:"field"`
	Type        string    `json:"type,omitempty"`
	Status      string    `json:"status,omitempty"` // the status the change sets
	EffectiveAt time.Time `json:"effective_at"`
	EventID     string    `json:"event_id,omitempty"`
	Source      string    `json:"source,omitempty"`
}

func pendingView(d state.Due) PendingView {
	v := PendingView{ID: d.ID, Person: d.PersonKey, Field: d.Field, EffectiveAt: d.EffectiveAt}
	if ev, err := events.Unmarshal(d.Event); err == nil {
		v.Email, v.Type, v.Status, v.EventID, v.Source = ev.Person.Email, string(ev.Type), string(ev.Person.Status), ev.ID, ev.Source
	}
	return v
}

// Pending lists the future-dated changes, earliest first; with personKey set,
// only that person's.
func (w *Worker) Pending(ctx context.Context, personKey string) ([]PendingView, error) {
	out := []PendingView{}
	for d, err := range w.records.Due.List(ctx) {
		if err != nil {
			return nil, err
		}
		if personKey != "" && d.PersonKey != personKey {
			continue
		}
		out = append(out, pendingView(d))
	}
	slices.SortFunc(out, func(a, b PendingView) int { return a.EffectiveAt.Compare(b.EffectiveAt) })
	return out, nil
}

// CancelPending cancels the future-dated change id and records it as evidence
// with the operator. A change already claimed for release cannot be cancelled
// (409): it is being applied.
func (w *Worker) CancelPending(ctx context.Context, id, operator string) (PendingView, error) {
	var found *state.Due
	for d, err := range w.records.Due.List(ctx) {
		if err != nil {
			return PendingView{}, err
		}
		if d.ID == id {
			found = &d
			break
		}
	}
	if found == nil {
		return PendingView{}, fmt.Errorf("pending change %s: %w", id, state.ErrNotFound)
	}
	if found.ClaimedUntil.After(time.Now()) {
		return PendingView{}, &conflict{"pending change " + id + " is being released right now; it can no longer be cancelled"}
	}
	v := pendingView(*found)
	if err := w.records.Due.Cancel(ctx, found.PersonKey, found.Field); err != nil {
		return PendingView{}, fmt.Errorf("cancel pending change %s: %w", id, err)
	}
	plan, _ := json.Marshal(map[string]any{"operator": operator, "cancelled": v})
	if _, err := w.records.Evidence.Append(ctx, state.Evidence{PersonKey: found.PersonKey, Email: v.Email, At: time.Now().UTC(),
		Kind: KindPendingCancelled, EventIDs: nonEmpty(v.EventID), Plan: plan, Outcome: "cancelled", Target: w.o.Target}); err != nil {
		return v, fmt.Errorf("pending change %s cancelled, but its evidence was not written: %w", id, err)
	}
	w.o.Logger.InfoContext(ctx, "pending change cancelled", "id", id, "person", found.PersonKey, "field", found.Field, "operator", operator)
	return v, nil
}

// LinkUnresolved gives an unresolved event's person an email and publishes
// the event again (a new event id, so dedupe lets it through): the worker
// then handles it like any other event, every check included (an unsigned
// source's termination is still confirmed with the provider first). The link
// is recorded as evidence with the operator, and the entry leaves the list.
func (w *Worker) LinkUnresolved(ctx context.Context, source, eventID, email, operator string) (map[string]any, error) {
	u, err := w.findUnresolved(ctx, source, eventID)
	if err != nil {
		return nil, err
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" {
		return nil, errBad("email: want a bare address such as jane@acme.com")
	}
	ev, err := events.Unmarshal(u.Event)
	if err != nil {
		return nil, fmt.Errorf("unresolved event %s: %w", eventID, err)
	}
	sum := sha256.Sum256([]byte(source + "\x00" + eventID + "\x00" + strings.ToLower(email)))
	ev.ID = "link_" + hex.EncodeToString(sum[:12])
	ev.Person.Email = email
	raw, err := events.Marshal(ev)
	if err != nil {
		return nil, err
	}
	plan, _ := json.Marshal(map[string]any{"operator": operator, "source": source, "event_id": eventID, "linked_email": email,
		"republished_as": ev.ID, "reason": u.Reason})
	key, err := w.linkKey(ctx, ev.Person.ID, email)
	if err != nil {
		return nil, err
	}
	if _, err := w.records.Evidence.Append(ctx, state.Evidence{PersonKey: key, Email: email,
		At: time.Now().UTC(), Kind: KindUnresolvedLinked, EventIDs: []string{eventID, ev.ID}, Plan: plan, Outcome: "linked", Target: w.o.Target}); err != nil {
		return nil, fmt.Errorf("link: evidence not written, nothing published: %w", err)
	}
	m := nats.NewMsg(ev.Subject())
	m.Data = raw
	m.Header.Set(events.HeaderSource, ev.Source)
	if _, err := w.js.PublishMsg(ctx, m, jetstream.WithMsgID(ev.ID)); err != nil {
		return nil, fmt.Errorf("link: publish: %w", err)
	}
	if err := w.unresolved.Delete(ctx, source, eventID); err != nil {
		return nil, fmt.Errorf("link: published as %s, but the entry stays listed: %w", ev.ID, err)
	}
	w.o.Logger.InfoContext(ctx, "unresolved event linked", "source", source, "event_id", eventID, "republished_as", ev.ID, "operator", operator)
	return map[string]any{"source": source, "event_id": eventID, "email": email, "republished_as": ev.ID, "linked_by": operator}, nil
}

// linkKey is the directory key the linked person's evidence goes under: the
// record the email already names, else the one email-less record carrying
// the event's HR id (the unresolved event created it), else the email's key.
func (w *Worker) linkKey(ctx context.Context, hrID, email string) (string, error) {
	if rec, err := w.findPerson(ctx, email); err == nil {
		return rec.Key, nil
	} else if !errors.Is(err, state.ErrNotFound) {
		return "", err
	}
	var keys []string
	for rec, err := range w.records.Directory.List(ctx) {
		if err != nil {
			return "", err
		}
		if hrID != "" && rec.Person.Email == "" && (rec.Person.ID == hrID || slices.Contains(slices.Collect(maps.Values(rec.IDs)), hrID)) {
			keys = append(keys, rec.Key)
		}
	}
	if len(keys) == 1 {
		return keys[0], nil
	}
	return "email:" + strings.ToLower(email), nil
}

// DismissUnresolved removes an entry without acting on it (logged with the
// operator; nothing changes in Sentry, so no evidence record).
func (w *Worker) DismissUnresolved(ctx context.Context, source, eventID, operator string) (map[string]any, error) {
	u, err := w.findUnresolved(ctx, source, eventID)
	if err != nil {
		return nil, err
	}
	if err := w.unresolved.Delete(ctx, source, eventID); err != nil {
		return nil, fmt.Errorf("dismiss: %w", err)
	}
	w.o.Logger.InfoContext(ctx, "unresolved event dismissed", "source", source, "event_id", eventID, "type", u.Type, "operator", operator)
	return map[string]any{"source": source, "event_id": eventID, "dismissed_by": operator}, nil
}

func (w *Worker) findUnresolved(ctx context.Context, source, eventID string) (jsstate.Unresolved, error) {
	if source == "" || eventID == "" {
		return jsstate.Unresolved{}, errBad("source and event_id are required")
	}
	for u, err := range w.unresolved.List(ctx) {
		if err != nil {
			return jsstate.Unresolved{}, err
		}
		if u.Source == source && u.EventID == eventID {
			return u, nil
		}
	}
	return jsstate.Unresolved{}, fmt.Errorf("unresolved event %s from %s: %w", eventID, source, state.ErrNotFound)
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// operationRoutes are the routes of runs, pending changes and unresolved
// events.
func (w *Worker) operationRoutes(handle func(pattern string, f func(*http.Request) (any, error))) {
	handle("GET /v1/runs", func(r *http.Request) (any, error) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		rs, err := w.Runs(r.Context(), limit)
		return map[string]any{"runs": rs}, err
	})
	handle("GET /v1/pending", func(r *http.Request) (any, error) {
		key := ""
		if email := r.URL.Query().Get("email"); email != "" {
			rec, err := w.findPerson(r.Context(), email)
			if errors.Is(err, state.ErrNotFound) {
				return map[string]any{"pending": []PendingView{}}, nil
			}
			if err != nil {
				return nil, err
			}
			key = rec.Key
		}
		ps, err := w.Pending(r.Context(), key)
		return map[string]any{"pending": ps}, err
	})
	handle("POST /v1/pending/cancel", func(r *http.Request) (any, error) {
		id := r.URL.Query().Get("id")
		if id == "" {
			return nil, errBad("id is required")
		}
		v, err := w.CancelPending(r.Context(), id, OperatorFrom(r.Context()))
		if err != nil {
			return nil, err
		}
		return map[string]any{"cancelled": v, "cancelled_by": OperatorFrom(r.Context())}, nil
	})
	handle("POST /v1/unresolved/link", func(r *http.Request) (any, error) {
		q := r.URL.Query()
		if q.Get("email") == "" {
			return nil, errBad("email is required")
		}
		return w.LinkUnresolved(r.Context(), q.Get("source"), q.Get("event_id"), q.Get("email"), OperatorFrom(r.Context()))
	})
	handle("POST /v1/unresolved/dismiss", func(r *http.Request) (any, error) {
		q := r.URL.Query()
		return w.DismissUnresolved(r.Context(), q.Get("source"), q.Get("event_id"), OperatorFrom(r.Context()))
	})
}
