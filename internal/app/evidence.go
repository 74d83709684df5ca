package app

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/sentry-jml/sentry-jml/internal/evidence"
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
