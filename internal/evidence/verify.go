package evidence

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/gowebpki/jcs"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// ErrBad marks an export that failed verification; the error names the
// first bad line.
var ErrBad = errors.New("evidence export does not verify")

// Result describes a verified export.
type Result struct {
	Records int `json:"records"`
	// Chains maps each chain ("" = the fleet chain) to its span in the file.
	Chains  map[string]Span `json:"chains"`
	Anchors int             `json:"anchors"`
	// Outside counts anchors whose head is not in the file (not checked).
	Outside int `json:"anchors_outside,omitempty"`
	// Legacy counts version 1 records (checked with the version 1 rule).
	Legacy int `json:"legacy_records,omitempty"`
	// Manifest says a signed manifest (an export of per-person chains)
	// matched the chains in the file.
	Manifest bool `json:"manifest,omitempty"`
}

// Span is a chain's first and last record in a file.
type Span struct {
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// FirstPrev is the first record's prev_hash: "" when the file starts at
	// the chain's first record, else the hash of a record before the file
	// (compare it with the last hash of the previous export).
	FirstPrev string `json:"first_prev_hash"`
	// Anchored says a valid anchor signs the chain's last record.
	Anchored bool `json:"anchored"`
	// lastHash is the last record's hash (for the manifest).
	lastHash string
}

// line is what verification reads of every line.
type line struct {
	Type     string `json:"type"`
	Chain    string `json:"chain"`
	V        int    `json:"v"`
	Seq      uint64 `json:"seq"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

type chainState struct {
	span   Span
	last   line
	hashes map[uint64]string
}

// HashV2 is a version 2 record's hash: SHA-256 of the RFC 8785 canonical
// JSON of the object without its "hash" member.
func HashV2(raw []byte) (string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", err
	}
	delete(m, "hash")
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	c, err := jcs.Transform(b)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

// canonicalMatch is the fast path of a version 2 line as Export writes it
// (its canonical form): the line without its ",\"hash\":\"…\"" member
// hashes to want. A match proves the content (those bytes are the
// canonical JSON the hash was made of, barring a SHA-256 collision); a
// miss (a reformatted line, a "hash" key inside the plan) falls back to
// canonicalizing the parsed line.
func canonicalMatch(raw []byte, want string) bool {
	if len(want) != sha256.Size*2 {
		return false
	}
	member := `,"hash":"` + want + `"`
	i := bytes.Index(raw, []byte(member))
	if i < 0 {
		return false
	}
	h := sha256.New()
	h.Write(raw[:i])
	h.Write(raw[i+len(member):])
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])) == want
}

// Verify checks an export (JSON Lines of records and anchors):
//
//  1. every record's hash matches its content (version 2: SHA-256 of the
//     RFC 8785 canonical JSON without "hash"; version 1: state.ComputeHash);
//  2. within each chain, records follow each other: seq+1, and prev_hash is
//     the hash of the record before; a file starting at seq 1 has an empty
//     prev_hash there;
//  3. every anchor is signed by one of keys, and the record it names (chain,
//     head_seq) is in the file with exactly head_hash — unless head_seq is
//     outside the file's span (counted in Outside);
//  4. each chain's last record is signed by a valid anchor;
//  5. when the file holds per-person chains, the export's signed manifest
//     (chain "*") matches every chain's span in the file, so removing a
//     whole chain (its records and its anchor) shows too.
//
// A rewritten and re-chained history fails 3 (an anchor signed before names
// the old hash) or 4 (no valid anchor). The error names the first bad line.
func Verify(r io.Reader, keys []ed25519.PublicKey) (Result, error) {
	res := Result{Chains: map[string]Span{}}
	if len(keys) == 0 {
		return res, errors.New("verify: no trusted public key (jml evidence key prints it)")
	}
	chains := map[string]*chainState{}
	var anchors []struct {
		n int
		a state.Anchor
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var l line
		if err := json.Unmarshal(raw, &l); err != nil {
			return res, fmt.Errorf("%w: line %d: not JSON: %w", ErrBad, n, err)
		}
		if l.Type == state.AnchorType {
			var a state.Anchor
			if err := json.Unmarshal(raw, &a); err != nil {
				return res, fmt.Errorf("%w: line %d: anchor: %w", ErrBad, n, err)
			}
			anchors = append(anchors, struct {
				n int
				a state.Anchor
			}{n, a})
			continue
		}
		if l.Type != "" {
			return res, fmt.Errorf("%w: line %d: unknown line type %q", ErrBad, n, l.Type)
		}
		name := fmt.Sprintf("line %d (chain %q, seq %d)", n, l.Chain, l.Seq)
		var h string
		var err error
		if l.V >= state.EvidenceV2 {
			if h = l.Hash; !canonicalMatch(raw, l.Hash) {
				h, err = HashV2(raw)
			}
		} else {
			var e state.Evidence
			if err = json.Unmarshal(raw, &e); err == nil {
				h, err = state.ComputeHash(e)
			}
			res.Legacy++
		}
		if err != nil {
			return res, fmt.Errorf("%w: %s: %w", ErrBad, name, err)
		}
		if h != l.Hash {
			return res, fmt.Errorf("%w: %s: content does not match its hash (edited)", ErrBad, name)
		}
		if l.Seq == 0 {
			return res, fmt.Errorf("%w: %s: no seq", ErrBad, name)
		}
		cs := chains[l.Chain]
		if cs == nil {
			if l.Seq == 1 && l.PrevHash != "" {
				return res, fmt.Errorf("%w: %s: the chain's first record has a prev_hash", ErrBad, name)
			}
			cs = &chainState{span: Span{FirstSeq: l.Seq, FirstPrev: l.PrevHash}, hashes: map[uint64]string{}}
			chains[l.Chain] = cs
		} else {
			if l.Seq != cs.last.Seq+1 {
				return res, fmt.Errorf("%w: %s: follows seq %d (a record is missing, inserted or moved)", ErrBad, name, cs.last.Seq)
			}
			if l.PrevHash != cs.last.Hash {
				return res, fmt.Errorf("%w: %s: prev_hash is not the hash of seq %d", ErrBad, name, cs.last.Seq)
			}
		}
		cs.last = l
		cs.span.LastSeq = l.Seq
		cs.hashes[l.Seq] = l.Hash
		res.Records++
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("verify: read: %w", err)
	}
	perPerson := false
	spans := make(map[string]Span, len(chains))
	for name, cs := range chains {
		perPerson = perPerson || name != ""
		sp := cs.span
		sp.lastHash = cs.last.Hash
		spans[name] = sp
	}
	for _, x := range anchors {
		a := x.a
		name := fmt.Sprintf("line %d (anchor of chain %q at seq %d)", x.n, a.Chain, a.HeadSeq)
		if err := VerifyAnchor(a, keys); err != nil {
			return res, fmt.Errorf("%w: %s: %w", ErrBad, name, err)
		}
		res.Anchors++
		if a.Chain == ManifestChain {
			if a.HeadSeq != uint64(res.Records) || a.HeadHash != ManifestHash(spans) {
				return res, fmt.Errorf("%w: line %d (manifest): the export signed %d records in other chains or spans than the file holds (a chain was removed, added or cut)",
					ErrBad, x.n, a.HeadSeq)
			}
			res.Manifest = true
			continue
		}
		cs := chains[a.Chain]
		if cs == nil || a.HeadSeq < cs.span.FirstSeq || a.HeadSeq > cs.span.LastSeq {
			res.Outside++
			continue
		}
		if cs.hashes[a.HeadSeq] != a.HeadHash {
			return res, fmt.Errorf("%w: %s: the anchor signed hash %.16s… for seq %d, but the record there has hash %.16s… (history rewritten after it was signed)",
				ErrBad, name, a.HeadHash, a.HeadSeq, cs.hashes[a.HeadSeq])
		}
		if a.HeadSeq == cs.span.LastSeq {
			cs.span.Anchored = true
		}
	}
	if perPerson && !res.Manifest {
		return res, fmt.Errorf("%w: per-person chains without a valid signed manifest: whole chains may have been removed", ErrBad)
	}
	for name, cs := range chains {
		if !cs.span.Anchored {
			return res, fmt.Errorf("%w: chain %q: no valid anchor signs its last record (seq %d): the history may have been rewritten and re-chained", ErrBad, name, cs.span.LastSeq)
		}
		res.Chains[name] = cs.span
	}
	return res, nil
}
