package evidence

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"iter"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// RawSource streams stored records with their bytes (jsstate.EvidenceLog).
type RawSource interface {
	ScanRaw(ctx context.Context, from, to time.Time) iter.Seq2[jsstate.RawEvidence, error]
}

// ExportSummary describes a written export.
type ExportSummary struct {
	Records  int    `json:"records"`
	FirstSeq uint64 `json:"first_seq,omitempty"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
	Anchors  int    `json:"anchors"`
}

// Export writes the records with from <= At < to (zero to: no bound) as
// JSON Lines of their exact stored bytes, oldest first, then every stored
// anchor whose head is among them, then a new anchor (reason "export")
// signing the last record written, stored in the anchor log too. The span
// is contiguous: a record inside it whose At falls outside the window (two
// replicas' clocks a little apart) is written too, so the links hold.
func Export(ctx context.Context, w io.Writer, src RawSource, an *Anchorer, from, to time.Time) (ExportSummary, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	var sum ExportSummary
	var pending [][]byte
	var lastHash string
	write := func(b []byte) error {
		if _, err := bw.Write(b); err != nil {
			return err
		}
		return bw.WriteByte('\n')
	}
	for r, err := range src.ScanRaw(ctx, from, to) {
		if err != nil {
			return sum, err
		}
		in := !r.At.Before(from) && (to.IsZero() || r.At.Before(to))
		if sum.Records == 0 && !in {
			continue
		}
		if !in {
			pending = append(pending, r.Raw)
			continue
		}
		for _, p := range pending {
			if err := write(p); err != nil {
				return sum, err
			}
			sum.Records++
		}
		pending = pending[:0]
		if err := write(r.Raw); err != nil {
			return sum, err
		}
		if sum.Records == 0 {
			sum.FirstSeq = r.Seq
		}
		sum.Records++
		sum.LastSeq, lastHash = r.Seq, r.Hash
	}
	if sum.Records > 0 {
		var since time.Time
		if !from.IsZero() {
			since = from
		}
		for a, err := range an.Anchors.Since(ctx, since) {
			if err != nil {
				return sum, err
			}
			if a.Chain != "" || a.HeadSeq < sum.FirstSeq || a.HeadSeq > sum.LastSeq {
				continue
			}
			if err := writeAnchor(write, a); err != nil {
				return sum, err
			}
			sum.Anchors++
		}
		a, err := an.Sign(ctx, "", sum.LastSeq, lastHash, ReasonExport)
		if err != nil {
			return sum, fmt.Errorf("sign the export's head: %w", err)
		}
		if err := writeAnchor(write, a); err != nil {
			return sum, err
		}
		sum.Anchors++
	}
	return sum, bw.Flush()
}

func writeAnchor(write func([]byte) error, a state.Anchor) error {
	b, err := EncodeAnchor(a)
	if err != nil {
		return err
	}
	return write(b)
}
