package roster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Source is the directory source name of roster writes.
const Source = "roster"

// ImportOptions control Import.
type ImportOptions struct {
	// AsOf is the time the roster describes (required): a row older than what
	// the directory holds for a field is ignored.
	AsOf time.Time
	// Full marks every person of the directory absent from the roster as
	// terminated (at AsOf), among the people linked to the roster's id
	// space (state.IDSpaces.Known): a person known only from an identity
	// provider or from an HR source with an id space of its own is left
	// alone.
	Full bool
	// IDSpaces says which id space the roster's ids live in (the zero
	// value: the one it shares with the generic source).
	IDSpaces state.IDSpaces
	// Seq orders two imports with the same AsOf (the later import wins when it
	// is larger); zero means the current time in nanoseconds.
	Seq uint64
	// DryRun computes the counts without writing.
	DryRun bool
	// MaxClockSkew is how far ahead of Now AsOf may be (default
	// events.DefaultMaxClockSkew): a roster dated in the future would outrank
	// every later event for its people.
	MaxClockSkew time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Result counts what an import did.
type Result struct {
	Rows       int       `json:"rows"`
	Applied    int       `json:"applied"`    // records created or changed
	Unchanged  int       `json:"unchanged"`  // older than, or equal to, what the directory holds
	Terminated int       `json:"terminated"` // --full: absent people marked terminated
	AsOf       time.Time `json:"as_of"`
	Full       bool      `json:"full"`
	DryRun     bool      `json:"dry_run,omitempty"`
}

// Import writes rows into dir as desired state at opts.AsOf. It never calls
// Sentry: convergence of the changes is reconcile's job.
func Import(ctx context.Context, dir state.Directory, rows []Row, opts ImportOptions) (Result, error) {
	im, err := newImporter(ctx, dir, opts)
	if err != nil {
		return Result{}, err
	}
	for _, r := range rows {
		if err := im.row(r); err != nil {
			return im.res, err
		}
	}
	return im.finish()
}

// ImportReader validates the roster in r (see Scan) and imports its rows as
// they are read, holding one row at a time: when a row is invalid, the rows
// before it stay imported and --full does nothing. Call it on a roster
// validated already (Scan with a nil fn) to import all or nothing.
func ImportReader(ctx context.Context, dir state.Directory, name string, r io.Reader, opts ImportOptions) (Result, error) {
	im, err := newImporter(ctx, dir, opts)
	if err != nil {
		return Result{}, err
	}
	// The scan's set of the rows' id and email keys is --full's set too;
	// the import adds a row's directory key when it is neither.
	seen := newKeySet()
	if im.seen != nil {
		im.seen = seen
	}
	if _, err := scan(name, r, im.row, seen); err != nil {
		return im.res, err
	}
	return im.finish()
}

// importer is one import: the rows so far and, for --full, the keys seen,
// as 64-bit hashes (keySet: 11 to 21 bytes a key; a row's id and email keys,
// which ImportReader shares with the duplicate check, and its directory key
// when it is neither). A hash collision
// keeps a person absent from the roster from being terminated (odds about
// n²/2⁶⁵), never the reverse.
type importer struct {
	ctx  context.Context
	dir  state.Directory
	opts ImportOptions
	v    state.Version
	res  Result
	seen *keySet
	// space is the roster's id space (opts.IDSpaces).
	space string
}

func newImporter(ctx context.Context, dir state.Directory, opts ImportOptions) (*importer, error) {
	if opts.AsOf.IsZero() {
		return nil, fmt.Errorf("roster import: %w: as-of time is required", ErrInvalid)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxClockSkew <= 0 {
		opts.MaxClockSkew = events.DefaultMaxClockSkew
	}
	if now := opts.Now(); opts.AsOf.After(now.Add(opts.MaxClockSkew)) {
		return nil, fmt.Errorf("roster import: %w: as-of %s is more than %s ahead of the clock", ErrInvalid,
			opts.AsOf.UTC().Format(time.RFC3339), opts.MaxClockSkew)
	}
	if opts.Seq == 0 {
		opts.Seq = uint64(time.Now().UnixNano())
	}
	v := state.Version{OccurredAt: opts.AsOf.UTC(), Source: Source, Seq: opts.Seq}
	im := &importer{ctx: ctx, dir: dir, opts: opts, v: v, res: Result{AsOf: v.OccurredAt, Full: opts.Full, DryRun: opts.DryRun},
		space: opts.IDSpaces.Space(Source)}
	if opts.Full {
		im.seen = newKeySet()
	}
	return im, nil
}

// row imports one row.
func (im *importer) row(r Row) error {
	ctx, dir, opts, v, res, seen := im.ctx, im.dir, im.opts, im.v, &im.res, im.seen
	if err := ctx.Err(); err != nil {
		return err
	}
	res.Rows++
	// The person this row is about, as the worker would find them: a
	// row for someone first seen by an identity provider (keyed by
	// email) or by an HR webhook updates that record instead of
	// starting a second one with the same email.
	resolve := state.ResolveNewPerson
	if opts.DryRun {
		resolve = state.ResolvePerson // writes nothing, not even a link claim
	}
	who, err := resolve(ctx, dir, opts.IDSpaces, Source, r.Person.ID, r.Person)
	if err != nil {
		return fmt.Errorf("roster line %d: %w", r.Line, err)
	}
	key := who.Key
	if seen != nil {
		// Row keys ("id:…", "email:…") are the same strings as directory
		// keys; a resolved key that is neither is added under "k" so that
		// it never looks like a later row's id or email to the duplicate
		// check sharing the set.
		emailKey := ""
		if r.Person.Email != "" {
			emailKey = "email:" + strings.ToLower(r.Person.Email)
			seen.add(emailKey)
		}
		seen.add(r.Person.Key())
		if key != r.Person.Key() && key != emailKey {
			seen.add("k" + key)
		}
	}
	eventID := fmt.Sprintf("roster:%s:%d", v.OccurredAt.Format(time.RFC3339), r.Line)
	if opts.DryRun {
		old, err := dir.Get(ctx, key)
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("roster line %d: %w", r.Line, err)
		}
		if _, applied := state.ApplyEvent(old, key, r.Person, v, eventID); applied {
			res.Applied++
		} else {
			res.Unchanged++
		}
		return nil
	}
	rec, applied, err := dir.Apply(ctx, key, r.Person, v, eventID)
	if err != nil {
		return fmt.Errorf("roster line %d: directory: %w", r.Line, err)
	}
	if !applied {
		res.Unchanged++
		return nil
	}
	res.Applied++
	if r.Person.Email != "" && !who.EmailLinked {
		if err := dir.Link(ctx, "email", strings.ToLower(r.Person.Email), key); err != nil {
			return fmt.Errorf("roster line %d: email link: %w", r.Line, err)
		}
	}
	if who.LinkID != "" {
		if err := dir.Link(ctx, who.LinkSource, who.LinkID, key); err != nil {
			return fmt.Errorf("roster line %d: %s link: %w", r.Line, Source, err)
		}
	}
	if _, changed := who.RecordIDs(rec); changed {
		if err := recordIDs(ctx, dir, who, key); err != nil {
			return fmt.Errorf("roster line %d: %w", r.Line, err)
		}
	}
	return nil
}

// finish runs --full: people of the directory absent from the roster are
// marked terminated.
func (im *importer) finish() (Result, error) {
	ctx, dir, opts, v, res, seen := im.ctx, im.dir, im.opts, im.v, im.res, im.seen
	if !opts.Full {
		return res, nil
	}
	var absent []state.PersonRecord
	for rec, err := range dir.List(ctx) {
		if err != nil {
			return res, fmt.Errorf("roster --full: list directory: %w", err)
		}
		if seen.has(rec.Key) || seen.has("k"+rec.Key) || (rec.Person.Email != "" && seen.has("email:"+strings.ToLower(rec.Person.Email))) {
			continue
		}
		// A row's key is "id:<its id>" when it has one (added above): the
		// id in the roster's space.
		if id := opts.IDSpaces.IDIn(rec, im.space); id != "" && seen.has("id:"+id) {
			continue
		}
		if rec.Person.Status == events.Terminated || !opts.IDSpaces.Known(rec, im.space) {
			continue // not the roster's to terminate
		}
		absent = append(absent, rec)
	}
	for _, rec := range absent {
		eventID := fmt.Sprintf("roster:%s:full", v.OccurredAt.Format(time.RFC3339))
		p := events.Person{Status: events.Terminated}
		if opts.DryRun {
			if _, applied := state.ApplyEvent(rec, rec.Key, p, v, eventID); applied {
				res.Terminated++
			}
			continue
		}
		_, applied, err := dir.Apply(ctx, rec.Key, p, v, eventID)
		if err != nil {
			return res, fmt.Errorf("roster --full: terminate %s: %w", rec.Key, err)
		}
		if applied {
			res.Terminated++
		}
	}
	return res, nil
}

func isNotFound(err error) bool { return err != nil && errors.Is(err, state.ErrNotFound) }

// recordIDs stores the person's id in the roster's id space on the record
// (state.Resolution.RecordIDs) when it is not there yet.
func recordIDs(ctx context.Context, dir state.Directory, who state.Resolution, key string) error {
	_, err := dir.Update(ctx, key, func(r state.PersonRecord) (state.PersonRecord, error) {
		r, _ = who.RecordIDs(r)
		return r, nil
	})
	if err != nil {
		return fmt.Errorf("record the %s id: %w", who.Space, err)
	}
	return nil
}
