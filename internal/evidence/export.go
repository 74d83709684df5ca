package evidence

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"iter"
	"sort"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// RawSource streams stored records with their bytes (jsstate.EvidenceLog).
type RawSource interface {
	ScanRaw(ctx context.Context, from, to time.Time) iter.Seq2[jsstate.RawEvidence, error]
}

// ManifestChain is the chain name of an export's manifest anchor: its
// head_hash is ManifestHash of the chains in the file, its head_seq the
// number of records.
const ManifestChain = "*"

// ManifestHash is the SHA-256 (hex) of one line per chain, sorted by chain
// name: "<chain> <first seq> <first prev_hash> <last seq> <last hash>\n"
// (the empty chain name, the fleet chain of records written before
// per-person chains, sorts first).
func ManifestHash(spans map[string]Span) string {
	names := make([]string, 0, len(spans))
	for n := range spans {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		sp := spans[n]
		fmt.Fprintf(h, "%s %d %s %d %s\n", n, sp.FirstSeq, sp.FirstPrev, sp.LastSeq, sp.lastHash)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ExportSummary describes a written export.
type ExportSummary struct {
	Records int `json:"records"`
	// FirstSeq and LastSeq are the seq of the first and the last record
	// written (of their chains).
	FirstSeq uint64 `json:"first_seq,omitempty"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
	// Chains is how many chains the records belong to.
	Chains  int `json:"chains,omitempty"`
	Anchors int `json:"anchors"`
}

// exportChain is one chain's span in an export.
type exportChain struct {
	first, last uint64
	firstPrev   string // the first record's prev_hash
	hash        string // the last record's
}

// Export writes the records with from <= At < to (zero to: no bound) as
// JSON Lines of their exact stored bytes, oldest first, then every stored
// anchor whose head is among them, then one new anchor (reason "export")
// per chain signing its last record written, stored in the anchor log too.
// The span is contiguous: a record inside it whose At falls outside the
// window (two replicas' clocks a little apart) is written too, so the links
// hold. Records of any layout export alike: each line carries its chain
// ("" for the fleet chain written before per-person chains), seq and hashes.
func Export(ctx context.Context, w io.Writer, src RawSource, an *Anchorer, from, to time.Time) (ExportSummary, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	var sum ExportSummary
	var pending []jsstate.RawEvidence
	chains := map[string]*exportChain{}
	var order []string
	write := func(b []byte) error {
		if _, err := bw.Write(b); err != nil {
			return err
		}
		return bw.WriteByte('\n')
	}
	record := func(r jsstate.RawEvidence) error {
		if err := write(r.Raw); err != nil {
			return err
		}
		if sum.Records == 0 {
			sum.FirstSeq = r.Seq
		}
		sum.Records++
		sum.LastSeq = r.Seq
		c := chains[r.Chain]
		if c == nil {
			c = &exportChain{first: r.Seq, firstPrev: r.PrevHash}
			chains[r.Chain] = c
			order = append(order, r.Chain)
		}
		c.last, c.hash = r.Seq, r.Hash
		return nil
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
			pending = append(pending, r)
			continue
		}
		for _, p := range pending {
			if err := record(p); err != nil {
				return sum, err
			}
		}
		pending = pending[:0]
		if err := record(r); err != nil {
			return sum, err
		}
	}
	sum.Chains = len(chains)
	if sum.Records > 0 {
		var since time.Time
		if !from.IsZero() {
			since = from
		}
		for a, err := range an.Anchors.Since(ctx, since) {
			if err != nil {
				return sum, err
			}
			c := chains[a.Chain]
			if c == nil || a.HeadSeq < c.first || a.HeadSeq > c.last {
				continue
			}
			if err := writeAnchor(write, a); err != nil {
				return sum, err
			}
			sum.Anchors++
		}
		spans := make(map[string]Span, len(chains))
		for _, name := range order {
			c := chains[name]
			a, err := an.Sign(ctx, name, c.last, c.hash, ReasonExport)
			if err != nil {
				return sum, fmt.Errorf("sign the export's head of chain %q: %w", name, err)
			}
			if err := writeAnchor(write, a); err != nil {
				return sum, err
			}
			sum.Anchors++
			spans[name] = Span{FirstSeq: c.first, FirstPrev: c.firstPrev, LastSeq: c.last, lastHash: c.hash}
		}
		// The fleet manifest: one signature over every chain's span in the
		// file, so a whole chain removed from it (records and anchor) shows.
		a, err := an.Sign(ctx, ManifestChain, uint64(sum.Records), ManifestHash(spans), ReasonExport)
		if err != nil {
			return sum, fmt.Errorf("sign the export's manifest: %w", err)
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
