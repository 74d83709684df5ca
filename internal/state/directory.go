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
	default:
		return storedTerminated && !incomingTerminated
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
