package state

import (
	"context"
	"iter"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// Version orders writes to one person's desired state: by the time the source says
// the change happened, then by the stream sequence of the event that carried it.
type Version struct {
	OccurredAt time.Time `json:"occurred_at"`
	Source     string    `json:"source"`
	Seq        uint64    `json:"seq"`
}

// PersonRecord is a person's desired state in the directory.
type PersonRecord struct {
	Key         string        `json:"key"`
	Person      events.Person `json:"person"`
	Version     Version       `json:"version"`
	LastEventID string        `json:"last_event_id,omitempty"`
	// FieldVersions is the version of the write that set each field, so a late
	// event still sets the fields nobody has set since (order independence).
	FieldVersions map[string]Version `json:"field_versions,omitempty"`
	// Sentry link, stored once the member was matched.
	MemberID  string    `json:"member_id,omitempty"`
	UserID    string    `json:"user_id,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Directory holds desired state, one versioned record per person. Implementations
// are durable (JetStream KV) and safe across replicas (compare-and-set).
type Directory interface {
	// Get returns the record, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (PersonRecord, error)
	// Apply merges the person carried by an event at version v into the stored
	// record. A write older than the stored version changes nothing and returns
	// applied=false with the stored record.
	Apply(ctx context.Context, key string, p events.Person, v Version, eventID string) (rec PersonRecord, applied bool, err error)
	// Update changes a record with fn under compare-and-set, retrying on conflict.
	Update(ctx context.Context, key string, fn func(PersonRecord) (PersonRecord, error)) (PersonRecord, error)
	// List streams every record without holding them all in memory (100k
	// persons), in no particular order. A record changed during the listing
	// is seen at least once, possibly in its older version.
	List(ctx context.Context) iter.Seq2[PersonRecord, error]
	// Link records that the person known to source as sourceID is personKey
	// (the link table). Linking again re-points the link.
	Link(ctx context.Context, source, sourceID, personKey string) error
	// Resolve returns the person key linked to (source, sourceID), or an error
	// wrapping ErrNotFound.
	Resolve(ctx context.Context, source, sourceID string) (personKey string, err error)
}

// ApplyEvent merges p, carried by an event at version v, into old field by
// field: each field the event carries is set unless a newer write already set
// it. applied reports whether anything changed. The record's Version is the
// newest version applied to it.
func ApplyEvent(old PersonRecord, key string, p events.Person, v Version, eventID string) (PersonRecord, bool) {
	rec := old
	rec.Key = key
	legacy := rec.FieldVersions == nil && !old.Version.OccurredAt.IsZero()
	fvs := make(map[string]Version, len(rec.FieldVersions)+4)
	for k, fv := range rec.FieldVersions {
		fvs[k] = fv
	}
	rec.FieldVersions = fvs
	incomingTerminated := p.Status == events.Terminated
	applied := false
	take := func(field string) bool {
		fv, ok := rec.FieldVersions[field]
		if !ok && legacy {
			fv, ok = old.Version, true // a record written before per-field versions
		}
		storedTerminated := field == "status" && rec.Person.Status == events.Terminated
		if ok && (v.Older(fv, field == "status" && incomingTerminated, storedTerminated) || v == fv) {
			return false
		}
		rec.FieldVersions[field] = v
		applied = true
		return true
	}
	str := func(field string, dst *string, val string) {
		if val != "" && take(field) {
			*dst = val
		}
	}
	str("id", &rec.Person.ID, p.ID)
	str("email", &rec.Person.Email, p.Email)
	str("name", &rec.Person.Name, p.Name)
	if p.Status != "" && take("status") {
		rec.Person.Status = p.Status
	}
	str("department", &rec.Person.Department, p.Department)
	str("title", &rec.Person.Title, p.Title)
	str("manager_email", &rec.Person.ManagerEmail, p.ManagerEmail)
	if p.Groups != nil && take("groups") {
		rec.Person.Groups = append([]string{}, p.Groups...)
	}
	for k, val := range p.Attributes {
		if take("attributes." + k) {
			attrs := make(map[string]string, len(rec.Person.Attributes)+1)
			for k2, v2 := range rec.Person.Attributes {
				attrs[k2] = v2
			}
			attrs[k] = val
			rec.Person.Attributes = attrs
		}
	}
	if !applied {
		return old, false
	}
	if old.Version.OccurredAt.IsZero() || !v.Older(old.Version, incomingTerminated, old.Person.Status == events.Terminated) {
		rec.Version = v
		rec.LastEventID = eventID
	}
	return rec, true
}

// Older reports whether v is older than stored, so a write at v must be ignored.
// Equal times within one source are ordered by sequence; across sources a
// terminated status wins the tie (incomingTerminated, storedTerminated).
func (v Version) Older(stored Version, incomingTerminated, storedTerminated bool) bool {
	switch {
	case v.OccurredAt.Before(stored.OccurredAt):
		return true
	case v.OccurredAt.After(stored.OccurredAt):
		return false
	case v.Source == stored.Source:
		return v.Seq < stored.Seq
	case storedTerminated != incomingTerminated:
		return storedTerminated
	default:
		// Equal times from two sources: a fixed order, so the outcome does not
		// depend on which arrived first.
		return v.Source < stored.Source
	}
}

// Merge returns stored updated with the non-empty fields of p. An empty status
// means "unchanged" (movers and updates).
func Merge(stored, p events.Person) events.Person {
	out := stored
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&out.ID, p.ID)
	set(&out.Email, p.Email)
	set(&out.Name, p.Name)
	if p.Status != "" {
		out.Status = p.Status
	}
	set(&out.Department, p.Department)
	set(&out.Title, p.Title)
	set(&out.ManagerEmail, p.ManagerEmail)
	if p.Groups != nil {
		out.Groups = append([]string(nil), p.Groups...)
	}
	if len(p.Attributes) > 0 {
		attrs := make(map[string]string, len(out.Attributes)+len(p.Attributes))
		for k, v := range out.Attributes {
			attrs[k] = v
		}
		for k, v := range p.Attributes {
			attrs[k] = v
		}
		out.Attributes = attrs
	}
	return out
}
