package follow

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// AuditReader reads the organization audit log, newest first (*sentry.Client).
type AuditReader interface {
	AuditLogs(ctx context.Context, q sentry.AuditLogQuery) iter.Seq2[sentry.AuditLogEntry, error]
}

// Publisher stores a convergence request in JML_EVENTS (*events.Publisher).
type Publisher interface {
	Publish(ctx context.Context, e events.Event) (events.PublishResult, error)
}

// CursorStore keeps the cursor durably with compare-and-set
// (*jsstate.FollowCursor): Load returns an error wrapping state.ErrNotFound
// before the first Save; Save with rev 0 creates.
type CursorStore interface {
	Load(ctx context.Context, v any) (rev uint64, err error)
	Save(ctx context.Context, v any, rev uint64) (uint64, error)
}

// Options wire a Follower.
type Options struct {
	Sentry    AuditReader
	Cursor    CursorStore
	Publisher Publisher
	// SelfUserID and SelfEmail identify the daemon's service user: entries it
	// caused are skipped.
	SelfUserID string
	SelfEmail  string
	// Alert raises an operator alert (audit_gap). Optional.
	Alert func(ctx context.Context, kind, person, summary string)
	// RequestReconcile asks for a full reconcile after a gap. Required.
	RequestReconcile func(ctx context.Context, reason string) error
	// MaxEntries bounds the new entries one poll reads (default 10,000);
	// more is a gap.
	MaxEntries int
	// Skew is how far out of order Sentry may list entries (its order is by
	// time, entries of concurrent requests commit in any order): each poll
	// reads back this far before its cursor, and the ids already handled in
	// that window are kept in the cursor (default 1 minute).
	Skew          time.Duration
	Logger        *slog.Logger
	MeterProvider metric.MeterProvider
	Now           func() time.Time
}

// Cursor is the follower's position: the newest entry time handled, and the
// ids handled within Skew of it.
type Cursor struct {
	LastAt time.Time `json:"last_at"`
	Seen   []Seen    `json:"seen,omitempty"`
	// Broken is the gap reason already alerted and reconciled for, while the
	// log still cannot be read past it; cleared by the next good poll.
	Broken string `json:"broken,omitempty"`
}

// Seen is one handled entry near the cursor.
type Seen struct {
	ID int64     `json:"id"`
	At time.Time `json:"at"`
}

// Gap reasons.
const (
	GapRetention = "retention" // the cursor's entries are no longer in the log
	GapBacklog   = "backlog"   // more than MaxEntries new entries
	GapShape     = "shape"     // a page or an entry the follower does not recognise
)

// Result is what one Poll did.
type Result struct {
	Read      int    // entries read (including the one that showed the cursor was reached)
	Requests  int    // convergence requests published
	Skipped   int    // member entries not turned into requests (self, no email)
	Gap       string // "" or a Gap* reason
	FirstPoll bool   // no cursor yet: it was set at the newest entry, nothing was published
}

// memberEvents are the audit events (Sentry's API names, src/sentry/audit_log/events.py
// and register calls in src/sentry/audit_log/__init__.py) that change a member's access.
var memberEvents = map[string]bool{
	"member.invite": true, "member.add": true, "member.accept-invite": true, "member.edit": true,
	"member.join-team": true, "member.leave-team": true, "member.remove": true,
}

// Follower follows the audit log.
type Follower struct {
	o        Options
	read     metric.Int64Counter
	requests metric.Int64Counter
	skipped  metric.Int64Counter
	gaps     metric.Int64Counter
	lag      metric.Float64Histogram
	lastOK   atomic.Int64 // unix seconds of the last successful poll (start before the first)
}

// New validates o.
func New(o Options) (*Follower, error) {
	if o.Sentry == nil || o.Cursor == nil || o.Publisher == nil || o.RequestReconcile == nil {
		return nil, errors.New("follow: Sentry, Cursor, Publisher and RequestReconcile are required")
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10_000
	}
	if o.Skew <= 0 {
		o.Skew = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	f := &Follower{o: o}
	f.lastOK.Store(o.Now().Unix())
	m := o.MeterProvider.Meter("github.com/sentry-jml/sentry-jml/internal/handlers/follow")
	var err error
	if f.read, err = m.Int64Counter("jml_audit_entries_read", metric.WithDescription("Sentry audit-log entries read by the follower")); err != nil {
		return nil, err
	}
	if f.requests, err = m.Int64Counter("jml_audit_requests", metric.WithDescription("convergence requests the follower published, by audit event")); err != nil {
		return nil, err
	}
	if f.skipped, err = m.Int64Counter("jml_audit_skipped", metric.WithDescription("member audit entries not turned into requests, by reason (self, no_email)")); err != nil {
		return nil, err
	}
	if f.gaps, err = m.Int64Counter("jml_audit_gaps", metric.WithDescription("audit-log gaps (entries lost or not understood), by reason; each requests a full reconcile")); err != nil {
		return nil, err
	}
	if f.lag, err = m.Float64Histogram("jml_audit_lag_seconds", metric.WithUnit("s"),
		metric.WithDescription("time from Sentry recording a member change to the follower's convergence request"),
		metric.WithExplicitBucketBoundaries(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 900)); err != nil {
		return nil, err
	}
	last, err := m.Int64ObservableGauge("jml_audit_last_poll_timestamp_seconds", metric.WithUnit("s"),
		metric.WithDescription("unix time of the follower's last successful poll, or of its start before the first (only the scheduler's leader polls: take the max across replicas)"))
	if err != nil {
		return nil, err
	}
	if _, err := m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		if v := f.lastOK.Load(); v > 0 {
			ob.ObserveInt64(last, v)
		}
		return nil
	}, last); err != nil {
		return nil, err
	}
	for _, r := range []string{GapRetention, GapBacklog, GapShape} {
		f.gaps.Add(context.Background(), 0, metric.WithAttributes(attribute.String("reason", r)))
	}
	return f, nil
}

// entryID is an entry's numeric id, or false when it has none (a shape change).
func entryID(e sentry.AuditLogEntry) (int64, bool) {
	n, err := strconv.ParseInt(e.ID, 10, 64)
	return n, err == nil && n > 0
}

// Poll reads the entries after the cursor, publishes a convergence request per
// member entry (oldest first), and advances the cursor. A gap is alerted and
// followed by a full reconcile request, and is not an error; an error (Sentry
// unreachable, JetStream down, a lost cursor race) leaves the cursor where it
// was, so the next poll reads the same entries again.
func (f *Follower) Poll(ctx context.Context) (Result, error) {
	ctx = sentry.WithPriority(ctx, sentry.PriorityReconcile)
	var cur Cursor
	rev, err := f.o.Cursor.Load(ctx, &cur)
	first := errors.Is(err, state.ErrNotFound)
	if err != nil && !first {
		return Result{}, err
	}
	var res Result
	seen := make(map[int64]bool, len(cur.Seen))
	for _, s := range cur.Seen {
		seen[s.ID] = true
	}
	cutoff := cur.LastAt.Add(-f.o.Skew)
	var fresh []sentry.AuditLogEntry
	var newest time.Time
	reached, metSeen, shape := false, false, ""
	for e, err := range f.o.Sentry.AuditLogs(ctx, sentry.AuditLogQuery{}) {
		if err != nil {
			if errors.Is(err, sentry.ErrShape) {
				shape = err.Error()
				break
			}
			return res, fmt.Errorf("read the audit log: %w", err)
		}
		res.Read++
		id, ok := entryID(e)
		if !ok || e.Event == "" || e.DateCreated.IsZero() {
			shape = fmt.Sprintf("entry %q (event %q, dateCreated %s) has no numeric id, event or time", e.ID, e.Event, e.DateCreated.Format(time.RFC3339))
			break
		}
		if e.DateCreated.After(newest) {
			newest = e.DateCreated
		}
		if first {
			// No cursor yet: start at the newest entry, publish nothing. One
			// page (the newest entries) is enough to know where "now" is.
			if e.DateCreated.Before(newest.Add(-f.o.Skew)) || res.Read >= 100 {
				break
			}
			fresh = append(fresh, e)
			continue
		}
		if e.DateCreated.Before(cutoff) {
			reached = true
			break
		}
		if seen[id] {
			metSeen = true
			continue
		}
		fresh = append(fresh, e)
		if len(fresh) > f.o.MaxEntries {
			break
		}
	}
	f.read.Add(ctx, int64(res.Read))
	if first {
		next := Cursor{LastAt: newest}
		if newest.IsZero() {
			next.LastAt = f.o.Now().UTC()
		}
		next.Seen = keep(nil, fresh, next.LastAt.Add(-f.o.Skew))
		if _, err := f.o.Cursor.Save(ctx, next, 0); err != nil {
			return res, err
		}
		res.FirstPoll = true
		f.lastOK.Store(f.o.Now().Unix())
		f.o.Logger.InfoContext(ctx, "audit-log follower starts at the newest entry", "last_at", next.LastAt)
		return res, nil
	}
	switch {
	case shape != "":
		res.Gap = GapShape
	case len(fresh) > f.o.MaxEntries:
		res.Gap = GapBacklog
		fresh = fresh[:f.o.MaxEntries]
	case !reached && !metSeen && len(cur.Seen) > 0:
		// The log ended before the cursor's time and none of the entries the
		// last poll handled is still listed: what came between is gone.
		res.Gap = GapRetention
	}
	// Oldest first, as they happened.
	slices.Reverse(fresh)
	for _, e := range fresh {
		ok, err := f.request(ctx, e)
		if err != nil {
			return res, err
		}
		if ok {
			res.Requests++
		} else if memberEvents[e.Event] {
			res.Skipped++
		}
	}
	next := Cursor{LastAt: cur.LastAt}
	if newest.After(next.LastAt) {
		next.LastAt = newest
	}
	next.Seen = keep(cur.Seen, fresh, next.LastAt.Add(-f.o.Skew))
	if res.Gap != "" {
		if err := f.gap(ctx, &next, cur.Broken, res.Gap, shape); err != nil {
			return res, err
		}
	}
	if shape != "" {
		// Nothing past the unreadable entry is trusted: the cursor stays, marked.
		next.LastAt, next.Seen = cur.LastAt, cur.Seen
	}
	if _, err := f.o.Cursor.Save(ctx, next, rev); err != nil {
		return res, err
	}
	if shape == "" {
		f.lastOK.Store(f.o.Now().Unix())
	}
	return res, nil
}

// gap alerts and requests a full reconcile, once per reason while the log
// stays broken (a shape change is met again on every poll until fixed).
func (f *Follower) gap(ctx context.Context, next *Cursor, broken, reason, detail string) error {
	f.gaps.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
	if reason == GapShape {
		next.Broken = reason
		if broken == reason {
			return nil
		}
	}
	summary := map[string]string{
		GapRetention: "the audit-log follower lost entries: the log no longer holds its cursor (retention, or Sentry or the follower down longer than the log keeps); a full reconcile was requested",
		GapBacklog:   fmt.Sprintf("the audit-log follower found more than %d new entries in one poll; the newest were followed, the rest are covered by the full reconcile requested", f.o.MaxEntries),
		GapShape:     "the audit-log follower no longer recognises Sentry's audit-log answer (the endpoint is experimental): " + detail + "; a full reconcile was requested and the follower retries every poll",
	}[reason]
	f.o.Logger.WarnContext(ctx, "audit-log gap", "reason", reason, "detail", detail)
	if f.o.Alert != nil {
		f.o.Alert(ctx, "audit_gap", "", summary)
	}
	if err := f.o.RequestReconcile(ctx, "audit-log gap: "+reason); err != nil {
		next.Broken = ""
		return fmt.Errorf("audit-log gap (%s): request a full reconcile: %w", reason, err)
	}
	return nil
}

// keep is the cursor's Seen list: old and fresh ids within the window.
func keep(old []Seen, fresh []sentry.AuditLogEntry, from time.Time) []Seen {
	var out []Seen
	for _, s := range old {
		if !s.At.Before(from) {
			out = append(out, s)
		}
	}
	for _, e := range fresh {
		if id, ok := entryID(e); ok && !e.DateCreated.Before(from) {
			out = append(out, Seen{ID: id, At: e.DateCreated.UTC()})
		}
	}
	return out
}

// request publishes the convergence request for a member entry; false when
// the entry is not about a member's access or is skipped.
func (f *Follower) request(ctx context.Context, e sentry.AuditLogEntry) (bool, error) {
	if !memberEvents[e.Event] {
		return false, nil
	}
	if f.self(e.Actor) {
		f.skipped.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "self")))
		return false, nil
	}
	email := memberEmail(e)
	if email == "" {
		f.skipped.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "no_email")))
		f.o.Logger.WarnContext(ctx, "audit entry names no member email; left to the next reconcile", "audit_id", e.ID, "event", e.Event)
		return false, nil
	}
	ob := &events.OutOfBand{AuditID: e.ID, Event: e.Event, At: e.DateCreated.UTC(), MemberID: e.TargetObjectID()}
	if a := e.Actor; a != nil {
		ob.ActorID = a.ID
		ob.Actor = a.Email
		if ob.Actor == "" {
			ob.Actor = a.Name
		}
	}
	if ob.Actor == "" {
		ob.Actor = "unknown"
	}
	now := f.o.Now().UTC()
	ev := events.Event{ID: e.ID, Source: events.SourceSentryAudit, Type: events.Update, OccurredAt: e.DateCreated.UTC(), ReceivedAt: now,
		Person: events.Person{Email: email}, OutOfBand: ob}
	if _, err := f.o.Publisher.Publish(ctx, ev); err != nil {
		return false, fmt.Errorf("audit entry %s: %w", e.ID, err)
	}
	f.requests.Add(ctx, 1, metric.WithAttributes(attribute.String("event", e.Event)))
	f.lag.Record(ctx, now.Sub(e.DateCreated).Seconds())
	return true, nil
}

// self reports an entry caused by the daemon's own service user.
func (f *Follower) self(a *sentry.AuditActor) bool {
	if a == nil {
		return false
	}
	return (f.o.SelfUserID != "" && a.ID == f.o.SelfUserID) || (f.o.SelfEmail != "" && strings.EqualFold(a.Email, f.o.SelfEmail))
}

// memberEmail is the member's email from the entry: data.email (what
// OrganizationMember.get_audit_log_data and the team events write), else the
// target user's email.
func memberEmail(e sentry.AuditLogEntry) string {
	if s, ok := e.Data["email"].(string); ok && strings.Contains(s, "@") {
		return s
	}
	return e.TargetUserEmail()
}
