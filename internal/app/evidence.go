package app

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/gowebpki/jcs"

	"github.com/sentry-jml/sentry-jml/internal/evidence"
	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/report"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// DefaultAnchorEvery is how often the evidence chain head is signed when
// WorkerOptions.EvidenceAnchorEvery is zero.
const DefaultAnchorEvery = 5 * time.Minute

// streamBody is a handler result written as it is (not JSON-encoded): an
// export of any size streams without being held in memory. An error after
// the first byte ends the body with a line that is not JSON, so a verifier
// fails on it.
type streamBody struct {
	contentType string
	write       func(w io.Writer) error
}

// errNoSigningKey: the worker has no evidence signing key.
var errNoSigningKey = errors.New("evidence: no signing key configured (JML_EVIDENCE_SIGNING_KEY[_FILE]); anchoring and export are disabled")

// anchorer returns the worker's anchorer, or errNoSigningKey.
func (w *Worker) anchorer() (*evidence.Anchorer, error) {
	if w.o.EvidenceKey == nil {
		return nil, errNoSigningKey
	}
	return &evidence.Anchorer{Head: w.records.Evidence, Anchors: w.records.Anchors, Key: w.o.EvidenceKey, Logger: w.o.Logger}, nil
}

// evidenceJobs: the periodic anchor, fleet-wide (one replica signs).
func (w *Worker) evidenceJobs() []schedJob {
	an, err := w.anchorer()
	if err != nil {
		w.o.Logger.Error("evidence anchoring disabled", "err", err)
		return nil
	}
	every := w.o.EvidenceAnchorEvery
	if every <= 0 {
		every = DefaultAnchorEvery
	}
	return []schedJob{{"evidence-anchor", gocron.DurationJob(every), func(ctx context.Context) error {
		_, _, err := an.AnchorHead(ctx)
		return err
	}, true}}
}

// EvidencePublicKey is the anchors' verification key (nil without a key).
func (w *Worker) EvidencePublicKey() ed25519.PublicKey {
	if w.o.EvidenceKey == nil {
		return nil
	}
	return w.o.EvidenceKey.Public().(ed25519.PublicKey)
}

// ExportEvidence writes the records with from <= At < to and their anchors
// (evidence.Export), signing the export's head.
func (w *Worker) ExportEvidence(ctx context.Context, out io.Writer, from, to time.Time) (evidence.ExportSummary, error) {
	an, err := w.anchorer()
	if err != nil {
		return evidence.ExportSummary{}, err
	}
	return evidence.Export(ctx, out, w.records.Evidence, an, from, to)
}

// AppendEvidence appends a record stamped with the request's operator and
// trigger (a signed access review).
func (w *Worker) AppendEvidence(ctx context.Context, e state.Evidence) (state.Evidence, error) {
	return stampedLog{w.records.Evidence}.Append(ctx, e)
}

// EvidenceRoutes are the auditor routes: the public key and the export.
func EvidenceRoutes(wk *Worker) []func(handle func(pattern string, f func(*http.Request) (any, error))) {
	return []func(handle func(pattern string, f func(*http.Request) (any, error))){func(handle func(string, func(*http.Request) (any, error))) {
		handle("GET /v1/evidence/key", func(*http.Request) (any, error) {
			pub := wk.EvidencePublicKey()
			if pub == nil {
				return nil, errNoSigningKey
			}
			pemKey, err := evidence.PublicKeyPEM(pub)
			if err != nil {
				return nil, err
			}
			return map[string]string{"public_key": evidence.EncodePublicKey(pub), "public_key_pem": pemKey, "key_id": evidence.KeyID(pub), "algorithm": "ed25519"}, nil
		})
		handle("GET /v1/evidence/export", func(r *http.Request) (any, error) {
			from, to, err := timeRange(r)
			if err != nil {
				return nil, err
			}
			if _, err := wk.anchorer(); err != nil {
				return nil, err
			}
			return streamBody{contentType: "application/x-ndjson", write: func(out io.Writer) error {
				_, err := wk.ExportEvidence(r.Context(), out, from, to)
				return err
			}}, nil
		})
	}}
}

// timeRange reads ?from=&to= (RFC 3339; either may be empty: unbounded).
func timeRange(r *http.Request) (from, to time.Time, err error) {
	q := r.URL.Query()
	if s := q.Get("from"); s != "" {
		if from, err = time.Parse(time.RFC3339, s); err != nil {
			return from, to, errBad("from must be an RFC 3339 time")
		}
	}
	if s := q.Get("to"); s != "" {
		if to, err = time.Parse(time.RFC3339, s); err != nil {
			return from, to, errBad("to must be an RFC 3339 time")
		}
	}
	if !to.IsZero() && !from.Before(to) {
		return from, to, errBad("from must be before to")
	}
	return from, to, nil
}

// serveStream writes a streamBody.
func serveStream(w http.ResponseWriter, s streamBody) {
	w.Header().Set("Content-Type", s.contentType)
	w.WriteHeader(http.StatusOK)
	if err := s.write(w); err != nil {
		fmt.Fprintf(w, "\nerror: %s\n", err)
	}
}

// ReportRoutes serve the reports built from the evidence log.
func ReportRoutes(wk *Worker) []func(handle func(pattern string, f func(*http.Request) (any, error))) {
	return []func(handle func(pattern string, f func(*http.Request) (any, error))){func(handle func(string, func(*http.Request) (any, error))) {
		handle("GET /v1/report/deprovisioning", func(r *http.Request) (any, error) {
			from, to, err := timeRange(r)
			if err != nil {
				return nil, err
			}
			q := r.URL.Query()
			o := report.Options{From: from, To: to, SLA: time.Hour}
			if s := q.Get("sla"); s != "" {
				if o.SLA, err = time.ParseDuration(s); err != nil || o.SLA <= 0 {
					return nil, errBad("sla must be a positive duration (1h, 4h)")
				}
			}
			if s := q.Get("sample"); s != "" {
				if o.Sample, err = strconv.Atoi(s); err != nil || o.Sample < 0 {
					return nil, errBad("sample must be a count")
				}
			}
			if s := q.Get("seed"); s != "" {
				if o.Seed, err = strconv.ParseUint(s, 10, 64); err != nil {
					return nil, errBad("seed must be a number")
				}
			}
			format := q.Get("format")
			switch format {
			case "":
				format = report.FormatHTML
			case report.FormatHTML, report.FormatCSV, report.FormatJSON:
			default:
				return nil, errBad("format must be html, csv or json")
			}
			rep, err := report.Deprovisioning(wk.records.Evidence.Range(r.Context(), from, to), o)
			if err != nil {
				return nil, err
			}
			return streamBody{contentType: report.ContentType(format), write: func(w io.Writer) error { return rep.Write(w, format) }}, nil
		})
	}}
}

// EvidenceAccessReview is the kind of a signed access review record.
const EvidenceAccessReview = "access_review"

// maxInlineReview bounds the reviewed snapshot kept inside the record (a
// JetStream message is at most 1 MiB by default); above it the record
// keeps the snapshot's SHA-256 and the signer keeps the file.
const maxInlineReview = 512 << 10

// reviewRecord is an access review record's plan.
type reviewRecord struct {
	Members    int                   `json:"members"`
	NoAccess   int                   `json:"no_access"`
	Disagree   int                   `json:"policy_disagrees"`
	SHA256     string                `json:"snapshot_sha256"` // of the RFC 8785 canonical JSON of {"members": rows}
	Inline     bool                  `json:"inline"`
	Snapshot   []reconcile.ReviewRow `json:"snapshot,omitempty"`
	ReviewedAt time.Time             `json:"reviewed_at"`
}

// SignAccessReview runs the access review and stores it as an evidence
// record whose operator is the admin token's operator (never a parameter).
func (w *Worker) SignAccessReview(ctx context.Context) (state.Evidence, []reconcile.ReviewRow, error) {
	reviewer := OperatorFrom(ctx)
	if reviewer == "" {
		return state.Evidence{}, nil, errBad("a signed review needs a named operator (an admin token)")
	}
	rec, err := w.Reconciler()
	if err != nil {
		return state.Evidence{}, nil, err
	}
	rows, err := rec.Review(ctx)
	if err != nil {
		return state.Evidence{}, nil, err
	}
	snap, err := json.Marshal(map[string]any{"members": rows})
	if err != nil {
		return state.Evidence{}, nil, err
	}
	canon, err := jcs.Transform(snap)
	if err != nil {
		return state.Evidence{}, nil, fmt.Errorf("canonicalize the review: %w", err)
	}
	sum := sha256.Sum256(canon)
	rr := reviewRecord{Members: len(rows), SHA256: hex.EncodeToString(sum[:]), ReviewedAt: time.Now().UTC()}
	for _, r := range rows {
		if r.Class == reconcile.ClassNoAccess {
			rr.NoAccess++
		}
		if !r.PolicyAgrees {
			rr.Disagree++
		}
	}
	if len(canon) <= maxInlineReview {
		rr.Inline, rr.Snapshot = true, rows
	}
	plan, err := json.Marshal(rr)
	if err != nil {
		return state.Evidence{}, nil, err
	}
	e, err := w.AppendEvidence(state.WithTrigger(ctx, state.Trigger{Source: "operator"}), state.Evidence{Kind: EvidenceAccessReview,
		Target: w.o.Target, Plan: plan, Outcome: "signed"})
	return e, rows, err
}

// InactiveMember is a member with no Sentry login within the window.
type InactiveMember struct {
	MemberID  string     `json:"member_id"`
	Email     string     `json:"email"`
	OrgRole   string     `json:"org_role"`
	LastLogin *time.Time `json:"last_login"` // nil: never logged in
	Person    string     `json:"person,omitempty"`
	Status    string     `json:"status,omitempty"`
	Class     string     `json:"class"`
}

// Inactive lists the members (not pending invites) whose user.lastLogin
// is before now minus days, or who never logged in (PCI DSS 8.2.6).
func (w *Worker) Inactive(ctx context.Context, days int, now time.Time) ([]InactiveMember, error) {
	rec, err := w.Reconciler()
	if err != nil {
		return nil, err
	}
	rows, err := rec.Review(ctx)
	if err != nil {
		return nil, err
	}
	return inactive(rows, now.AddDate(0, 0, -days)), nil
}

func inactive(rows []reconcile.ReviewRow, cutoff time.Time) []InactiveMember {
	out := []InactiveMember{}
	for _, r := range rows {
		if r.MemberID == "" || r.Pending || r.Class == reconcile.ClassProtected {
			continue
		}
		if r.LastLogin != nil && !r.LastLogin.Before(cutoff) {
			continue
		}
		out = append(out, InactiveMember{MemberID: r.MemberID, Email: r.Email, OrgRole: r.OrgRole, LastLogin: r.LastLogin,
			Person: r.PersonKey, Status: r.Status, Class: r.Class})
	}
	return out
}

// AccessRoutes: the signed access review and the inactive-member report.
func AccessRoutes(wk *Worker) []func(handle func(pattern string, f func(*http.Request) (any, error))) {
	return []func(handle func(pattern string, f func(*http.Request) (any, error))){func(handle func(string, func(*http.Request) (any, error))) {
		handle("POST /v1/access/review/sign", func(r *http.Request) (any, error) {
			// A job: the review reads the whole org, about a minute for 100k
			// members at Sentry's limits, beyond any request's write timeout.
			// The reviewer is the operator of the request's token.
			op := OperatorFrom(r.Context())
			j := wk.jobs.start(context.WithoutCancel(r.Context()), "access review sign-off", op, "", nil, func(ctx context.Context) (any, error) {
				e, rows, err := wk.SignAccessReview(ctx)
				if err != nil {
					return nil, err
				}
				return map[string]any{"reviewer": e.Operator, "seq": e.Seq, "hash": e.Hash, "at": e.At, "members": rows}, nil
			})
			return j.answer(r)
		})
		handle("GET /v1/report/inactive", func(r *http.Request) (any, error) {
			days := 90
			if s := r.URL.Query().Get("days"); s != "" {
				n, err := strconv.Atoi(s)
				if err != nil || n <= 0 {
					return nil, errBad("days must be a positive number")
				}
				days = n
			}
			// A job: it lists every member of the org.
			j := wk.jobs.start(context.WithoutCancel(r.Context()), "inactive members report", OperatorFrom(r.Context()), "", nil, func(ctx context.Context) (any, error) {
				now := time.Now().UTC()
				ms, err := wk.Inactive(ctx, days, now)
				if err != nil {
					return nil, err
				}
				return map[string]any{"days": days, "cutoff": now.AddDate(0, 0, -days), "members": ms}, nil
			})
			return j.answer(r)
		})
	}}
}
