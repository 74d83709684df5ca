package state

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/gowebpki/jcs"
)

// Sentinel errors of the record contracts. Backends wrap them; compare with errors.Is.
var (
	// ErrRunNotHalted: the reconcile run is not waiting for an approval (it was
	// never halted, or it was approved already).
	ErrRunNotHalted = errors.New("state: run is not halted")
	// ErrRunExpired: the halted plan passed its ExpiresAt before it was approved.
	ErrRunExpired = errors.New("state: halted run expired")
	// ErrChainBroken: an evidence chain failed verification.
	ErrChainBroken = errors.New("state: evidence chain broken")
)

// TeamAccess is one team membership in an access snapshot.
type TeamAccess struct {
	Slug string `json:"slug"`
	Role string `json:"role,omitempty"` // effective team role; "" when Sentry reports none
}

// Snapshot is a person's Sentry access taken just before a removal, so a
// mistaken termination can be re-granted in one step (Sentry deletes members
// for good; a rehire is a new invite with the snapshot's role and teams).
type Snapshot struct {
	PersonKey string       `json:"person_key"`
	Email     string       `json:"email"`
	MemberID  string       `json:"member_id,omitempty"`
	UserID    string       `json:"user_id,omitempty"`
	OrgRole   string       `json:"org_role"`
	Teams     []TeamAccess `json:"teams,omitempty"`
	Pending   bool         `json:"pending,omitempty"` // a pending invite, not a member
	TakenAt   time.Time    `json:"taken_at"`
	EventID   string       `json:"event_id,omitempty"` // the event whose convergence took it
	// RegrantedTo is the member id of the invite a rehire re-granted this
	// snapshot to; RestoredAt is when its team roles were restored on that
	// member after acceptance (Sentry stores an invite's team roles as null).
	RegrantedTo string    `json:"regranted_to,omitempty"`
	RestoredAt  time.Time `json:"restored_at,omitzero"`
}

// Snapshots keeps access snapshots per person, newest last. Backends keep a
// bounded number of snapshots per person (at least the last 10).
type Snapshots interface {
	// Put stores s as the person's latest snapshot. PersonKey is required.
	Put(ctx context.Context, s Snapshot) error
	// Latest returns the newest snapshot, or an error wrapping ErrNotFound.
	Latest(ctx context.Context, personKey string) (Snapshot, error)
	// List returns the kept snapshots, oldest first (empty, nil error, when none).
	List(ctx context.Context, personKey string) ([]Snapshot, error)
}

// Evidence kinds.
const (
	EvidenceConvergence = "convergence"
	EvidenceNeedsHuman  = "needs_human"
	EvidenceBrake       = "brake"
	EvidenceApproval    = "approval"
)

// Evidence targets.
const (
	TargetSandbox = "sandbox"
	TargetSentry  = "sentry"
)

// Evidence is one audit record: what a convergence run (or a brake, an
// approval, a case for a human) did for a person, and why. The records form
// hash chains: Hash is ComputeHash of the record and PrevHash the Hash of the
// record before it in its chain, so an export shows any edit, deletion or
// reordering (VerifyChain). Records written before per-person chains form
// one fleet chain (Chain ""); since then each person has a chain of their
// own (Chain names it), anchored by signed anchors (internal/evidence).
type Evidence struct {
	// Seq is the record's position in its chain, from 1, without gaps.
	Seq uint64 `json:"seq"`
	// Chain names the record's chain: "" for the fleet chain of the records
	// written before per-person chains, else the person's chain (see
	// jsstate.EvidenceChain). Version 2 only.
	Chain     string    `json:"chain,omitempty"`
	PersonKey string    `json:"person_key,omitempty"` // "" for org-wide records (a reconcile brake)
	Email     string    `json:"email,omitempty"`
	At        time.Time `json:"at"`
	Kind      string    `json:"kind"`
	EventIDs  []string  `json:"event_ids,omitempty"`
	Target    string    `json:"target,omitempty"` // TargetSandbox or TargetSentry
	// Plan is the computed plan; Steps the API calls made, each with its result
	// and time. Both are opaque JSON to the log.
	Plan     json.RawMessage `json:"plan,omitempty"`
	Steps    json.RawMessage `json:"steps,omitempty"`
	Outcome  string          `json:"outcome,omitempty"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash,omitempty"`

	// The fields below are version 2 (V = EvidenceV2). They are all omitted
	// when empty, so a version 1 record (V absent) encodes exactly as it was
	// written and keeps verifying under its own rule.

	// V is the record's format version: absent (0) for version 1, whose hash
	// is over EncodeEvidence's struct-order JSON; EvidenceV2 for records
	// hashed over RFC 8785 (JCS) canonical JSON.
	V int `json:"v,omitempty"`
	// Trigger is what caused the record: an HR event or a reconcile run.
	Trigger *Trigger `json:"trigger,omitempty"`
	// Operator is the named admin-token operator whose request caused the
	// record (an approval, a manual reconcile, a signed access review); ""
	// for the daemon acting on an event or a schedule.
	Operator string `json:"operator,omitempty"`
	// Status is the person's desired status when the record was written
	// ("terminated" for a leaver), so a report finds leavers whose removal
	// was held or failed.
	Status string `json:"desired_status,omitempty"`
	// Snapshot is the person's Sentry access read before any removal.
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	// Requests are the Sentry HTTP requests the convergence made, in order.
	Requests []SentryRequest `json:"requests,omitempty"`
}

// EvidenceV2 is the current evidence format version (see Evidence.V).
const EvidenceV2 = 2

// Trigger is what caused an evidence record.
type Trigger struct {
	// Source is the event source ("generic", "okta", "roster", …), or
	// "reconcile" for a reconcile run, "operator" for an admin request.
	Source  string `json:"source,omitempty"`
	EventID string `json:"event_id,omitempty"`
	// OccurredAt and EffectiveAt are the HR system's times: when the change
	// was made and when it takes effect (a future-dated termination).
	OccurredAt  time.Time `json:"occurred_at,omitzero"`
	EffectiveAt time.Time `json:"effective_at,omitzero"`
	// ReceivedAt is when the daemon accepted the event (webhook answered).
	ReceivedAt time.Time `json:"received_at,omitzero"`
	// RunID names the reconcile run that applied the change.
	RunID string `json:"run_id,omitempty"`
}

// SentryRequest is one HTTP request made to Sentry (each retry is its own
// request): method, path (no query, no secrets), the status answered (0 when
// no answer came), and when it was sent.
type SentryRequest struct {
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Status     int       `json:"status"`
	At         time.Time `json:"at"`
	DurationMS int64     `json:"duration_ms"`
	Error      string    `json:"error,omitempty"`
}

// ComputeHash returns the hex SHA-256 of the record's hashed bytes:
// for version 2, the RFC 8785 (JCS) canonical JSON of the record without
// "hash"; for version 1 (V absent), EncodeEvidence of the record without
// "hash".
func ComputeHash(e Evidence) (string, error) {
	e.Hash = ""
	b, err := EncodeEvidence(e)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// EncodeEvidence is the canonical JSON of a record, as stored and exported.
// Version 2 (V = EvidenceV2): RFC 8785 JSON canonicalization (keys sorted,
// compact, ECMAScript number and string forms), so any JCS implementation
// reproduces the bytes from the parsed object. Version 1 (V absent): the
// fields in the order declared above, compact, without HTML escaping, Plan
// and Steps compacted, At in RFC 3339 with nanoseconds.
func EncodeEvidence(e Evidence) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("evidence %d: encode: %w", e.Seq, err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if e.V < EvidenceV2 {
		return b, nil
	}
	c, err := jcs.Transform(b)
	if err != nil {
		return nil, fmt.Errorf("evidence %d: canonicalize: %w", e.Seq, err)
	}
	return c, nil
}

// EvidenceLog is the append-only, hash-chained audit log.
type EvidenceLog interface {
	// Append stores e and returns it with Seq, PrevHash and Hash filled (and At
	// set to the current time when zero). Concurrent appenders, in one process
	// or on several replicas, still produce one gap-free chain.
	Append(ctx context.Context, e Evidence) (Evidence, error)
	// ByPerson streams a person's records, oldest first.
	ByPerson(ctx context.Context, personKey string) iter.Seq2[Evidence, error]
	// Range streams the records with from <= At < to, oldest first. A zero to
	// means no upper bound.
	Range(ctx context.Context, from, to time.Time) iter.Seq2[Evidence, error]
}

// VerifyChain checks a contiguous run of evidence records, oldest first (an
// export of Range, or the whole log), chain by chain: each record's Hash
// matches its content, each PrevHash is the Hash of the record before it in
// its chain, and sequence numbers follow each other without gaps. An edited record, a deleted or inserted one
// and a reordering all fail with an error wrapping ErrChainBroken; an error
// from the sequence itself is returned as it is. The first record anchors the
// chain; when it claims Seq 1 its PrevHash must be empty. To prove nothing
// was removed before the first record, use VerifyChainFrom with the last hash
// of an earlier export.
func VerifyChain(seq iter.Seq2[Evidence, error]) error {
	return verifyChain(seq, false, "")
}

// VerifyChainFrom is VerifyChain with a known anchor: each chain's first
// record's PrevHash must equal prevHash ("" means each chain's first record
// must be its first, Seq 1).
func VerifyChainFrom(prevHash string, seq iter.Seq2[Evidence, error]) error {
	return verifyChain(seq, true, prevHash)
}

func verifyChain(seq iter.Seq2[Evidence, error], anchored bool, anchor string) error {
	// Each chain is checked on its own; records of several chains may
	// interleave (per-person chains in stream order).
	prevs := map[string]*Evidence{}
	n := 0
	for e, err := range seq {
		if err != nil {
			return err
		}
		n++
		h, err := ComputeHash(e)
		if err != nil {
			return err
		}
		if h != e.Hash {
			return fmt.Errorf("%w: record %d (seq %d): content does not match its hash", ErrChainBroken, n, e.Seq)
		}
		prev := prevs[e.Chain]
		switch {
		case prev != nil:
			if e.Seq != prev.Seq+1 {
				return fmt.Errorf("%w: record %d: seq %d follows seq %d", ErrChainBroken, n, e.Seq, prev.Seq)
			}
			if e.PrevHash != prev.Hash {
				return fmt.Errorf("%w: record %d (seq %d): prev_hash does not match the hash of seq %d", ErrChainBroken, n, e.Seq, prev.Seq)
			}
		case anchored:
			if e.PrevHash != anchor {
				return fmt.Errorf("%w: first record (seq %d): prev_hash does not match the anchor", ErrChainBroken, e.Seq)
			}
			if anchor == "" && e.Seq != 1 {
				return fmt.Errorf("%w: first record has seq %d, want 1", ErrChainBroken, e.Seq)
			}
		case e.Seq == 1 && e.PrevHash != "":
			return fmt.Errorf("%w: seq 1 has a prev_hash", ErrChainBroken)
		case e.Seq == 0:
			return fmt.Errorf("%w: record %d has no seq", ErrChainBroken, n)
		}
		cur := e
		prevs[e.Chain] = &cur
	}
	return nil
}

// Due is a future-dated change waiting for its time: at most one per person
// and field.
type Due struct {
	// ID identifies this scheduled change (e.g. the event id).
	ID        string `json:"id"`
	PersonKey string `json:"person_key"`
	// Field is what the change sets ("status", "department", …). A later
	// event for the same person and field replaces it.
	Field string `json:"field"`
	// Version is the version of the event that scheduled it: an older event
	// never replaces a newer scheduled change.
	Version Version `json:"version"`
	// Event is the encoded event to apply when due (opaque to the queue).
	Event       json.RawMessage `json:"event"`
	EffectiveAt time.Time       `json:"effective_at"`
	// Trace is the trace context (W3C traceparent/tracestate, as the
	// propagator writes it) of the handling that scheduled the change: the
	// release links to it, so the story of the webhook goes on.
	Trace map[string]string `json:"trace,omitempty"`
	// Revision and ClaimedUntil are set by the queue: the stored revision, and
	// for a popped change until when its popper holds the claim.
	Revision     uint64    `json:"-"`
	ClaimedUntil time.Time `json:"claimed_until,omitzero"`
}

// DueQueue holds future-dated changes durably.
type DueQueue interface {
	// Schedule stores d, replacing a change scheduled earlier for the same
	// PersonKey and Field — unless the stored one carries a newer Version, in
	// which case nothing changes and scheduled is false.
	Schedule(ctx context.Context, d Due) (scheduled bool, err error)
	// Cancel removes the scheduled change for personKey and field; an empty
	// field cancels every change of the person (a rehire). No error when
	// nothing is scheduled.
	Cancel(ctx context.Context, personKey, field string) error
	// PopDue claims up to max changes with EffectiveAt <= now, earliest first,
	// and returns them. Each due change is handed to exactly one caller across
	// replicas; the claim lasts for the queue's claim time, after which an
	// unfinished change (its popper crashed) is handed out again. Call Done
	// once the change was applied.
	PopDue(ctx context.Context, now time.Time, max int) ([]Due, error)
	// Done removes a popped change. If the change was replaced meanwhile (a
	// newer event for the same field), the replacement stays and Done returns
	// nil.
	Done(ctx context.Context, d Due) error
	// List streams the scheduled changes (claimed ones included) in no
	// particular order.
	List(ctx context.Context) iter.Seq2[Due, error]
	// Len counts the scheduled changes.
	Len(ctx context.Context) (int, error)
}

// Reconcile run statuses.
const (
	RunPlanned  = "planned"
	RunApplied  = "applied"
	RunHalted   = "halted"
	RunApproved = "approved"
	RunExpired  = "expired"
)

// ReconcileRun is one reconcile (or a burst of event removals) and its plan.
// A halted run waits for an approval until ExpiresAt; readers see a halted run
// past ExpiresAt as RunExpired.
type ReconcileRun struct {
	ID         string          `json:"id"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	Status     string          `json:"status"`
	Counts     map[string]int  `json:"counts,omitempty"`
	Plan       json.RawMessage `json:"plan,omitempty"`
	ApprovedBy string          `json:"approved_by,omitempty"`
	ApprovedAt time.Time       `json:"approved_at,omitzero"`
	ExpiresAt  time.Time       `json:"expires_at,omitzero"`
	// Reason says why a halted run halted (the brake it crossed); Trigger
	// what started the run ("schedule", "operator:<name>", …). Runs stored
	// before these fields existed have neither.
	Reason  string `json:"reason,omitempty"`
	Trigger string `json:"trigger,omitempty"`
}

// Expired reports whether r is a halted run whose approval window is over at now.
func (r ReconcileRun) Expired(now time.Time) bool {
	return r.Status == RunHalted && !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

// Runs stores reconcile runs and halted plans.
type Runs interface {
	// Put stores r (ID required), replacing a stored run with the same ID.
	Put(ctx context.Context, r ReconcileRun) error
	// Get returns the run, or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) (ReconcileRun, error)
	// List streams the stored runs.
	List(ctx context.Context) iter.Seq2[ReconcileRun, error]
	// Approve marks a halted run approved by `by` at now, under compare-and-set:
	// among concurrent approvers exactly one succeeds. The others, and any
	// later call, get ErrRunNotHalted; a run past ExpiresAt gets ErrRunExpired.
	Approve(ctx context.Context, id, by string, now time.Time) (ReconcileRun, error)
}
