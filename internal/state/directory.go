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
	// IDs is the person's HR id in each id space that links to it (see
	// IDSpaces): {"hr": "E-1", "gusto": "G-7"}. Records stored before ids
	// were namespaced have none; IDSpaces.IDIn infers them.
	IDs map[string]string `json:"ids,omitempty"`
	// EmailLink is the email (lower case) whose link ("email", it) the
	// event worker wrote to point here, so an event carrying the same email
	// does not write the link again ("" when not recorded: it is written).
	EmailLink string `json:"email_link,omitempty"`
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
	// may be seen in its older version, or (if it was written after the
	// listing started) not at all: callers treat absence from one listing
	// as "not known yet", never as "gone" (reconcile re-checks an orphan
	// through the email link before removing it).
	List(ctx context.Context) iter.Seq2[PersonRecord, error]
	// Link records that the person known to source as sourceID is personKey
	// (the link table). Linking again re-points the link.
	Link(ctx context.Context, source, sourceID, personKey string) error
	// Resolve returns the person key linked to (source, sourceID), or an error
	// wrapping ErrNotFound.
	Resolve(ctx context.Context, source, sourceID string) (personKey string, err error)
}

// ClampFuture clamps the versions of rec (its Version and every field's)
// that lie more than skew ahead of now, reporting whether any did. A record
// stored before event times were bounded may carry a version in the far
// future (a forged rehire dated 5138), which would outrank every later,
// properly dated event for the person. Such versions become the time the
// record was last written (UpdatedAt), or now when that is unknown or later:
// no true event of the person can have happened after the write, so every
// later event wins again.
func ClampFuture(rec PersonRecord, now time.Time, skew time.Duration) (PersonRecord, bool) {
	limit := now.Add(skew)
	to := now.UTC()
	if !rec.UpdatedAt.IsZero() && rec.UpdatedAt.Before(to) {
		to = rec.UpdatedAt.UTC()
	}
	clamped := false
	if rec.Version.OccurredAt.After(limit) {
		rec.Version.OccurredAt, clamped = to, true
	}
	var fvs map[string]Version
	for f, v := range rec.FieldVersions {
		if !v.OccurredAt.After(limit) {
			continue
		}
		if fvs == nil {
			fvs = make(map[string]Version, len(rec.FieldVersions))
			for k, v2 := range rec.FieldVersions {
				fvs[k] = v2
			}
		}
		v.OccurredAt = to
		fvs[f], clamped = v, true
	}
	if fvs != nil {
		rec.FieldVersions = fvs
	}
	return rec, clamped
}

// sourceClass is a source's class for per-field precedence (see Authoritative).
type sourceClass int

const (
	classIdP sourceClass = iota // "okta", "scim" and every source name not listed below
	classHR                     // the HR webhook sources
	classAll                    // the generic source and the roster import
)

// sourceClasses maps a Version.Source name to its class. The names are the
// providers' in the registry (internal/handlers/providers, whose Class each
// entry here must match: its TestClassesMatchTheDirectory checks; not
// imported, as the registry's packages import this one) and roster.Source
// ("roster").
var sourceClasses = map[string]sourceClass{
	"generic":  classAll,
	"roster":   classAll,
	"bamboohr": classHR,
	"hibob":    classHR,
	"gusto":    classHR,
	"personio": classHR,
	"deel":     classHR,
	"rippling": classHR,
	"okta":     classIdP,
	"scim":     classIdP,
}

// Authoritative reports whether source is authoritative for field, a directory
// field name ("id", "email", "name", "status", "department", "title",
// "manager_email", "groups" or "attributes.<key>"):
//
//	source                                            authoritative for
//	generic, roster                                   every field
//	bamboohr, hibob, gusto, personio, deel, rippling  every field except groups
//	okta, scim, any other name (an IdP)               groups and status
//
// An unknown source name is treated as an IdP: a SCIM server configured with
// another Source name, or a new IdP, must not outrank HR on HR fields, and every
// class is authoritative for status anyway. A source that is not authoritative
// for a field can still set it while no authoritative write has (a company
// with only Okta still gets a name and email from Okta).
func Authoritative(source, field string) bool {
	switch sourceClasses[source] {
	case classAll:
		return true
	case classHR:
		return field != "groups"
	default:
		return field == "groups" || field == "status"
	}
}

// ApplyEvent merges p, carried by an event at version v, into old field by
// field. Each field the event carries is set unless the write that set it
// already outranks v: writes to one field are ordered first by precedence (a
// write from a source Authoritative for the field beats one from a source that
// is not, whatever their times), then by Version.Older (time, then stream
// sequence within one source, terminated winning ties across sources). The
// stored value is always the highest write seen, so the result does not depend
// on the order events arrive in (one corner, see Older: a status tie between
// two writes of one source and a third source at the same occurred_at).
//
// applied reports whether anything changed. The record's Version and
// LastEventID are those of the newest (by Version.Older) write that changed
// something; unlike the fields, that can depend on arrival order when a
// non-authoritative write filled a field before an older authoritative write
// replaced it.
//
// A record stored before per-field versions (FieldVersions nil) counts each
// field it holds a value for as written at its Version, by its Version.Source.
func ApplyEvent(old PersonRecord, key string, p events.Person, v Version, eventID string) (PersonRecord, bool) {
	rec := old
	rec.Key = key
	fvs := make(map[string]Version, len(rec.FieldVersions)+4)
	if rec.FieldVersions == nil && !old.Version.OccurredAt.IsZero() {
		legacyFieldVersions(fvs, old.Person, old.Version)
	}
	for k, fv := range rec.FieldVersions {
		fvs[k] = fv
	}
	rec.FieldVersions = fvs
	incomingTerminated := p.Status == events.Terminated
	applied := false
	take := func(field string) bool {
		if fv, ok := rec.FieldVersions[field]; ok {
			storedTerminated := field == "status" && rec.Person.Status == events.Terminated
			if !v.outranks(fv, field, field == "status" && incomingTerminated, storedTerminated) {
				return false
			}
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

// outranks reports whether a write at v to field replaces the value written at
// stored: an authoritative write beats a non-authoritative one; within the same
// tier the newer by Older wins. The same version (a replay) never does.
func (v Version) outranks(stored Version, field string, incomingTerminated, storedTerminated bool) bool {
	if v == stored {
		return false
	}
	if in, st := Authoritative(v.Source, field), Authoritative(stored.Source, field); in != st {
		return in
	}
	return !v.Older(stored, incomingTerminated, storedTerminated)
}

// legacyFieldVersions records v for every field p holds a value for.
func legacyFieldVersions(fvs map[string]Version, p events.Person, v Version) {
	for field, val := range map[string]string{"id": p.ID, "email": p.Email, "name": p.Name, "status": string(p.Status),
		"department": p.Department, "title": p.Title, "manager_email": p.ManagerEmail} {
		if val != "" {
			fvs[field] = v
		}
	}
	if p.Groups != nil {
		fvs["groups"] = v
	}
	for k := range p.Attributes {
		fvs["attributes."+k] = v
	}
}

// Older reports whether v is older than stored, so a write at v must be ignored.
// Equal times within one source are ordered by sequence; across sources a
// terminated status wins the tie (incomingTerminated, storedTerminated).
// Together the two tie rules are not transitive: at one occurred_at, source A's
// terminated (seq 1) and active (seq 2) and source B's suspended (B > A) beat
// each other in a cycle, so that status depends on arrival order.
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
