package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// SharedIDSpace is the id space the generic source and the roster share, and
// any other source the operator declares (JML_SHARED_ID_SPACE). Every other
// HR source has an id space of its own, named after the source.
const SharedIDSpace = "hr"

// DefaultSharedSources are the sources of SharedIDSpace when the operator
// declares none: the generic source and the roster.
func DefaultSharedSources() []string { return []string{"generic", "roster"} }

// reservedSpace reports names that cannot be source names in an id space
// list: they are link namespaces or key prefixes of their own.
func reservedSpace(name string) bool { return name == SharedIDSpace || name == "email" || name == "id" }

// IDSpaces says which id space the HR ids of each source live in. A person is
// keyed by the id of its source: the same id at two sources is two people,
// except for the sources that share SharedIDSpace. The zero value is the
// default (DefaultSharedSources).
//
// Keys: a person first seen with an id of SharedIDSpace is "id:<id>" (the key
// every HR id had before ids were namespaced, so those records keep their
// key); with an id of another space S, "S:<id>" ("gusto:E-4004"). A person
// first seen with an email alone is "email:<email>", as before. One
// exception keeps old records apart: a record stored under "id:<id>" by
// another source before ids were namespaced belongs to that source's space
// (see Owner), and a new person of SharedIDSpace with that id is keyed
// "hr:<id>" instead.
type IDSpaces struct {
	shared []string // sorted, without duplicates; nil means the default
}

// NewIDSpaces returns the id spaces with sources sharing SharedIDSpace. An
// empty list means DefaultSharedSources. Names are lower-case source names
// ("generic", "roster", "bamboohr", …); "hr", "email" and "id" are reserved.
func NewIDSpaces(sharedSources []string) (IDSpaces, error) {
	var out []string
	for _, s := range sharedSources {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if reservedSpace(s) || strings.ContainsFunc(s, func(r rune) bool {
			return (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' && r != '-'
		}) {
			return IDSpaces{}, fmt.Errorf("shared id space: %q is not a source name (lower-case letters, digits, _ and -; hr, email and id are reserved)", s)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return IDSpaces{}, nil
	}
	slices.Sort(out)
	return IDSpaces{shared: out}, nil
}

// Shared lists the sources of SharedIDSpace, sorted.
func (s IDSpaces) Shared() []string {
	if s.shared == nil {
		d := DefaultSharedSources()
		slices.Sort(d)
		return d
	}
	return slices.Clone(s.shared)
}

// Space is the id space of source's HR ids: SharedIDSpace for a source that
// shares it, else the source's own name.
func (s IDSpaces) Space(source string) string {
	if slices.Contains(s.Shared(), source) {
		return SharedIDSpace
	}
	return source
}

// Key is the directory key of a new person with id in space.
func (s IDSpaces) Key(space, id string) string {
	if space == SharedIDSpace {
		return "id:" + id
	}
	return space + ":" + id
}

// EmailKey is the directory key of a new person known by email alone.
func EmailKey(email string) string { return "email:" + strings.ToLower(email) }

// idSource is the HR source that set rec's id field, "" when unknown or
// when it was not an HR source (an identity provider owns no HR id).
func idSource(rec PersonRecord) string {
	src := ""
	if fv, ok := rec.FieldVersions["id"]; ok {
		src = fv.Source
	} else if rec.FieldVersions == nil && rec.Person.ID != "" {
		src = rec.Version.Source // a record stored before per-field versions
	}
	if !Authoritative(src, "id") {
		return ""
	}
	return src
}

// Owner is the id space a record keyed "id:<id>" belongs to: SharedIDSpace,
// unless the record was stored under that key by a source of another space
// before ids were namespaced (the id it holds under the key was set by that
// source). "" for a record not keyed "id:<id>".
func (s IDSpaces) Owner(rec PersonRecord) string {
	x, ok := strings.CutPrefix(rec.Key, "id:")
	if !ok {
		return ""
	}
	if rec.IDs[SharedIDSpace] == x {
		return SharedIDSpace
	}
	for _, sp := range sortedKeys(rec.IDs) {
		if rec.IDs[sp] == x {
			return sp
		}
	}
	if rec.Person.ID == x {
		if src := idSource(rec); src != "" {
			return s.Space(src)
		}
	}
	return SharedIDSpace
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// IDIn is the person's id in space, "" when the record holds none: the id
// recorded for the space (IDs), else what the key and the id field say (a
// record stored before IDs).
func (s IDSpaces) IDIn(rec PersonRecord, space string) string {
	if id := rec.IDs[space]; id != "" {
		return id
	}
	if x, ok := strings.CutPrefix(rec.Key, "id:"); ok && s.Owner(rec) == space {
		return x
	}
	prefix := space + ":"
	if space == SharedIDSpace {
		prefix = "hr:"
	}
	if x, ok := strings.CutPrefix(rec.Key, prefix); ok {
		return x
	}
	if rec.Person.ID != "" {
		if src := idSource(rec); src != "" && s.Space(src) == space {
			return rec.Person.ID
		}
	}
	return ""
}

// Known reports whether the person is linked to space: it holds an id there,
// or a source of the space wrote one of its fields (a generic event with an
// email alone). roster import --full terminates only people known to the
// roster's space.
func (s IDSpaces) Known(rec PersonRecord, space string) bool {
	if s.IDIn(rec, space) != "" {
		return true
	}
	if rec.Version.Source != "" && s.Space(rec.Version.Source) == space {
		return true
	}
	for _, fv := range rec.FieldVersions {
		if s.Space(fv.Source) == space {
			return true
		}
	}
	return false
}

// Resolution says which directory person a change is about.
type Resolution struct {
	// Key is the person's directory key; "" for a change that carries only
	// a source id nobody is linked to yet.
	Key string
	// LinkSource and LinkID are the link still to be written once the
	// change is applied ("" when it exists): (id space, HR id) for an HR
	// id, (source, IdP id) for an identity provider's own id.
	LinkSource, LinkID string
	// Space and ID are the HR id space and id the change carries ("" for
	// an identity provider's id or an email alone): once applied, the
	// record's IDs[Space] is ID.
	Space, ID string
	// EmailLinked is true when the email link already points at Key.
	EmailLinked bool
	// New is true when no link matched: Key is a person nobody has
	// linked yet (ClaimEmail closes the race of two first contacts).
	New bool
}

// ResolvePerson finds the directory person a change from source is about,
// so one human seen by an HR system (keyed by its id), an identity provider
// (keyed by email) and the roster is one person. sourceID is the HR id (p.ID)
// for an HR source, or the identity provider's own id (okta_id, scim_id).
//
// An HR id is looked up in its id space (spaces.Space(source)): the link
// (space, id); for SharedIDSpace also the links its sources wrote before ids
// were namespaced ((generic, id), (roster, id), …). An identity provider's id
// is looked up as (source, id). Else the person the email is linked to,
// else a new person (IDSpaces.Key, or the email key). An email linked to a
// person with another id in the same space is not followed: a recycled
// address is another human, and merging them would hand the new hire the
// leaver's record and access snapshot. An id of another space is no such
// evidence: one human may be in two HR systems. A link table that cannot be
// read is an error (retry): guessing would split a person in two.
func ResolvePerson(ctx context.Context, dir Directory, spaces IDSpaces, source, sourceID string, p events.Person) (Resolution, error) {
	var r Resolution
	if p.ID != "" {
		r.Space, r.ID = spaces.Space(source), p.ID
	}
	switch {
	case sourceID != "" && sourceID == p.ID:
		k, legacy, err := lookupHR(ctx, dir, spaces, r.Space, p.ID)
		if err != nil {
			return Resolution{}, err
		}
		if k != "" {
			r.Key = k
			if legacy {
				r.LinkSource, r.LinkID = r.Space, p.ID
			}
			return r, nil
		}
		r.LinkSource, r.LinkID = r.Space, p.ID
	case sourceID != "":
		k, err := dir.Resolve(ctx, source, sourceID)
		if err == nil {
			r.Key = k
			return r, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Resolution{}, fmt.Errorf("link table (%s): %w", source, err)
		}
		r.LinkSource, r.LinkID = source, sourceID
	}
	if p.Email != "" {
		k, err := dir.Resolve(ctx, "email", strings.ToLower(p.Email))
		if err == nil && p.ID != "" {
			rec, gerr := dir.Get(ctx, k)
			switch {
			case gerr != nil && !errors.Is(gerr, ErrNotFound):
				return Resolution{}, fmt.Errorf("directory: %w", gerr)
			case gerr == nil:
				if other := spaces.IDIn(rec, r.Space); other != "" && other != p.ID {
					key, err := newKey(ctx, dir, spaces, r.Space, p.ID)
					if err != nil {
						return Resolution{}, err
					}
					r.Key = key
					return r, nil
				}
			}
		}
		if err == nil {
			r.Key, r.EmailLinked = k, true
			return r, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Resolution{}, fmt.Errorf("link table (email): %w", err)
		}
	}
	switch {
	case p.ID != "":
		key, err := newKey(ctx, dir, spaces, r.Space, p.ID)
		if err != nil {
			return Resolution{}, err
		}
		r.Key = key
	case p.Email != "":
		r.Key = EmailKey(p.Email)
	default:
		return r, nil
	}
	r.New = true
	return r, nil
}

// lookupHR finds the person linked to id in space; legacy is true when only
// a link written before ids were namespaced matched (the caller writes the
// (space, id) link then).
func lookupHR(ctx context.Context, dir Directory, spaces IDSpaces, space, id string) (key string, legacy bool, err error) {
	k, err := dir.Resolve(ctx, space, id)
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return "", false, fmt.Errorf("link table (%s): %w", space, err)
	}
	if space != SharedIDSpace {
		return "", false, nil
	}
	for _, src := range spaces.Shared() {
		k, err := dir.Resolve(ctx, src, id)
		if err == nil {
			return k, true, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return "", false, fmt.Errorf("link table (%s): %w", src, err)
		}
	}
	return "", false, nil
}

// newKey is the key of a person with id in space that no link names. A
// record stored under "id:<id>" before ids were namespaced belongs to the
// space of the source that wrote it (IDSpaces.Owner): it is that space's
// person, and SharedIDSpace's person with the same id is "hr:<id>".
func newKey(ctx context.Context, dir Directory, spaces IDSpaces, space, id string) (string, error) {
	legacy := "id:" + id
	rec, err := dir.Get(ctx, legacy)
	if errors.Is(err, ErrNotFound) {
		return spaces.Key(space, id), nil
	}
	if err != nil {
		return "", fmt.Errorf("directory: %w", err)
	}
	owner := spaces.Owner(rec)
	switch {
	case space == SharedIDSpace && owner != SharedIDSpace:
		return "hr:" + id, nil
	case space != SharedIDSpace && owner == space:
		return legacy, nil
	}
	return spaces.Key(space, id), nil
}

// LinkClaimer is a Directory that can link an email (or any source id) to a
// person only if nobody has it yet (jsstate.Directory).
type LinkClaimer interface {
	ClaimLink(ctx context.Context, source, sourceID, personKey string) (owner string, err error)
}

// ResolveNewPerson is ResolvePerson for a writer about to create a person:
// when no link matched and the change carries an email, it claims the email
// link for the new person first. If another replica claimed it a moment
// before (the first events of an HR system and an identity provider about a
// new hire, processed at once), the change is resolved again and joins that
// person instead of starting a second one.
func ResolveNewPerson(ctx context.Context, dir Directory, spaces IDSpaces, source, sourceID string, p events.Person) (Resolution, error) {
	r, err := ResolvePerson(ctx, dir, spaces, source, sourceID, p)
	if err != nil || !r.New || p.Email == "" {
		return r, err
	}
	c, ok := dir.(LinkClaimer)
	if !ok {
		return r, nil
	}
	owner, err := c.ClaimLink(ctx, "email", strings.ToLower(p.Email), r.Key)
	if err != nil {
		return Resolution{}, fmt.Errorf("link table (email): %w", err)
	}
	if owner == r.Key {
		r.EmailLinked = true
		return r, nil
	}
	r, err = ResolvePerson(ctx, dir, spaces, source, sourceID, p)
	r.New = false
	return r, err
}

// RecordIDs sets rec's id in the resolution's space (Resolution.Space and
// ID), reporting whether it changed: writers call it under Directory.Update
// once a change is applied, so IDIn and Known need no inference.
func (r Resolution) RecordIDs(rec PersonRecord) (PersonRecord, bool) {
	if r.Space == "" || r.ID == "" || rec.IDs[r.Space] == r.ID {
		return rec, false
	}
	ids := make(map[string]string, len(rec.IDs)+1)
	for k, v := range rec.IDs {
		ids[k] = v
	}
	ids[r.Space] = r.ID
	rec.IDs = ids
	return rec, true
}
