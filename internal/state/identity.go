package state

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// Resolution says which directory person a change is about.
type Resolution struct {
	// Key is the person's directory key; "" for a change that carries only
	// a source id nobody is linked to yet.
	Key string
	// LinkSource and LinkID are the (source, source id) link still to be
	// written once the change is applied ("" when it exists).
	LinkSource, LinkID string
	// EmailLinked is true when the email link already points at Key.
	EmailLinked bool
	// New is true when no link matched: Key is a person nobody has
	// linked yet (ClaimEmail closes the race of two first contacts).
	New bool
}

// ResolvePerson finds the directory person a change from source is about,
// so one human seen by an HR system (keyed by its id), an identity provider
// (keyed by email) and the roster is one person: the link of (source,
// sourceID) first, else the person the email is linked to, else a new
// person keyed by p (HR id, or email). An email linked to a person with
// another HR id is not followed: a recycled address is another human, and
// merging them would hand the new hire the leaver's record and access
// snapshot. A link table that cannot be read is an error (retry): guessing
// would split a person in two.
func ResolvePerson(ctx context.Context, dir Directory, source, sourceID string, p events.Person) (Resolution, error) {
	if sourceID != "" {
		k, err := dir.Resolve(ctx, source, sourceID)
		if err == nil {
			return Resolution{Key: k}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Resolution{}, fmt.Errorf("link table (%s): %w", source, err)
		}
	}
	if p.Email != "" {
		k, err := dir.Resolve(ctx, "email", strings.ToLower(p.Email))
		if err == nil && p.ID != "" {
			rec, gerr := dir.Get(ctx, k)
			switch {
			case gerr != nil && !errors.Is(gerr, ErrNotFound):
				return Resolution{}, fmt.Errorf("directory: %w", gerr)
			case gerr == nil && rec.Person.ID != "" && rec.Person.ID != p.ID:
				return Resolution{Key: p.Key(), LinkSource: source, LinkID: sourceID}, nil
			}
		}
		if err == nil {
			return Resolution{Key: k, LinkSource: source, LinkID: sourceID, EmailLinked: true}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Resolution{}, fmt.Errorf("link table (email): %w", err)
		}
	}
	if p.ID == "" && p.Email == "" {
		return Resolution{LinkSource: source, LinkID: sourceID}, nil
	}
	return Resolution{Key: p.Key(), LinkSource: source, LinkID: sourceID, New: true}, nil
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
func ResolveNewPerson(ctx context.Context, dir Directory, source, sourceID string, p events.Person) (Resolution, error) {
	r, err := ResolvePerson(ctx, dir, source, sourceID, p)
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
	r, err = ResolvePerson(ctx, dir, source, sourceID, p)
	r.New = false
	return r, err
}
