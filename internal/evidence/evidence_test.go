package evidence_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/evidence"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

type fixture struct {
	js  jetstream.JetStream
	log *jsstate.EvidenceLog
	an  *evidence.Anchorer
	key ed25519.PrivateKey
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	_, _, js := natstest.Run(t)
	r, err := jsstate.Open(t.Context(), js, jsstate.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	key, err := evidence.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{js: js, log: r.Evidence, key: key, an: &evidence.Anchorer{Head: r.Evidence, Anchors: r.Anchors, Key: key}}
}

// append writes n records of one person (one chain).
func (f *fixture) append(t *testing.T, n int) {
	t.Helper()
	f.appendFor(t, n, func(int) string { return "id:E-1" })
}

// appendFor writes n records, record i for person(i).
func (f *fixture) appendFor(t *testing.T, n int, person func(i int) string) {
	t.Helper()
	for i := range n {
		_, err := f.log.Append(t.Context(), state.Evidence{PersonKey: person(i), Email: fmt.Sprintf("p%d@example.com", i),
			Kind: state.EvidenceConvergence, Outcome: "applied", Plan: json.RawMessage(`{"outcome":"applied","note":"<&> é \u2028"}`),
			Trigger:  &state.Trigger{Source: "generic", EventID: fmt.Sprintf("ev-%d", i), OccurredAt: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)},
			Requests: []state.SentryRequest{{Method: "DELETE", Path: "/api/0/organizations/acme/members/1/", Status: 204, At: time.Now().UTC(), DurationMS: 12}}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fixture) export(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := evidence.Export(t.Context(), &buf, f.log, f.an, time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (f *fixture) pub() []ed25519.PublicKey { return []ed25519.PublicKey{f.an.PublicKey()} }

func TestExportVerifies(t *testing.T) {
	f := newFixture(t)
	f.append(t, 4)
	if _, stored, err := f.an.AnchorHead(t.Context()); err != nil || !stored {
		t.Fatalf("periodic anchor: stored=%v err=%v", stored, err)
	}
	if _, stored, _ := f.an.AnchorHead(t.Context()); stored {
		t.Fatal("a second periodic anchor over an unchanged head must not be stored")
	}
	f.append(t, 3)
	out := f.export(t)
	res, err := evidence.Verify(bytes.NewReader(out), f.pub())
	if err != nil {
		t.Fatalf("intact export: %v\n%s", err, out)
	}
	// One chain (one person): the periodic anchor at 4, the export's at 7,
	// and the export's manifest.
	c := res.Chains[jsstate.EvidenceChain("id:E-1")]
	if res.Records != 7 || res.Anchors != 3 || len(res.Chains) != 1 || !c.Anchored || c.FirstSeq != 1 || c.LastSeq != 7 || !res.Manifest {
		t.Fatalf("result %+v", res)
	}
	// The lines are the stored bytes: the record as Append returned it encodes to line 1.
	first := bytes.SplitN(out, []byte("\n"), 2)[0]
	var e state.Evidence
	if err := json.Unmarshal(first, &e); err != nil {
		t.Fatal(err)
	}
	again, _ := state.EncodeEvidence(e)
	if !bytes.Equal(again, first) || e.V != state.EvidenceV2 {
		t.Fatalf("export line is not the canonical stored bytes:\n%s\n%s", first, again)
	}
	// Another key is not trusted.
	other, _ := evidence.GenerateKey()
	if _, err := evidence.Verify(bytes.NewReader(out), []ed25519.PublicKey{other.Public().(ed25519.PublicKey)}); !errors.Is(err, evidence.ErrBad) {
		t.Fatalf("foreign key accepted: %v", err)
	}
}

func lines(b []byte) []string { return strings.Split(strings.TrimSpace(string(b)), "\n") }

func TestTamperedExportNamesFirstBadLine(t *testing.T) {
	f := newFixture(t)
	f.append(t, 5)
	ls := lines(f.export(t))
	cases := map[string]func([]string) []string{
		"edited outcome": func(l []string) []string {
			l[2] = strings.Replace(l[2], `"outcome":"applied"`, `"outcome":"in_sync"`, 1)
			return l
		},
		"deleted record": func(l []string) []string { return append(l[:1:1], l[2:]...) },
		"swapped records": func(l []string) []string {
			l[1], l[2] = l[2], l[1]
			return l
		},
		"anchor dropped": func(l []string) []string { return l[:5] },
		"anchor signature edited": func(l []string) []string {
			l[5] = strings.Replace(l[5], `"reason":"export"`, `"reason":"periodic"`, 1)
			return l
		},
	}
	want := map[string]string{"edited outcome": "line 3 ", "deleted record": "line 2 ", "swapped records": "line 2 ",
		"anchor dropped": "without a valid signed manifest", "anchor signature edited": "signature does not verify"}
	for name, mut := range cases {
		t.Run(name, func(t *testing.T) {
			l := mut(append([]string(nil), ls...))
			_, err := evidence.Verify(strings.NewReader(strings.Join(l, "\n")), f.pub())
			if !errors.Is(err, evidence.ErrBad) || !strings.Contains(err.Error(), want[name]) {
				t.Fatalf("got %v, want an ErrBad naming %q", err, want[name])
			}
		})
	}
}

// rechain rewrites record i (0-based) of the record lines and re-hashes and
// re-links every record after it, as someone with write access to JetStream
// but without the signing key could.
func rechain(t *testing.T, ls []string, i int) []string {
	t.Helper()
	out := append([]string(nil), ls...)
	prev := ""
	for k, l := range out {
		var e state.Evidence
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Kind == "" {
			continue // an anchor
		}
		if k == i {
			e.Outcome = "in_sync"
		}
		if k >= i {
			e.PrevHash = prev
			e.Hash = ""
			h, err := state.ComputeHash(e)
			if err != nil {
				t.Fatal(err)
			}
			e.Hash = h
			b, _ := state.EncodeEvidence(e)
			out[k] = string(b)
		}
		prev = e.Hash
	}
	return out
}

func TestRechainedHistoryFails(t *testing.T) {
	f := newFixture(t)
	f.append(t, 3)
	if _, _, err := f.an.AnchorHead(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.append(t, 3)
	ls := lines(f.export(t)) // 6 records, periodic anchor at 3, export anchor at 6
	forged := rechain(t, ls, 1)
	// The chain alone is consistent again...
	var recs []state.Evidence
	for _, l := range forged[:6] {
		var e state.Evidence
		_ = json.Unmarshal([]byte(l), &e)
		recs = append(recs, e)
	}
	if err := state.VerifyChainFrom("", func(y func(state.Evidence, error) bool) {
		for _, e := range recs {
			if !y(e, nil) {
				return
			}
		}
	}); err != nil {
		t.Fatalf("the forgery should be a consistent chain: %v", err)
	}
	// ...but the anchors signed before do not match it.
	_, err := evidence.Verify(strings.NewReader(strings.Join(forged, "\n")), f.pub())
	if !errors.Is(err, evidence.ErrBad) || !strings.Contains(err.Error(), "history rewritten") {
		t.Fatalf("re-chained history with the old anchors: %v", err)
	}
	// Dropping the anchors leaves no valid one.
	_, err = evidence.Verify(strings.NewReader(strings.Join(forged[:6], "\n")), f.pub())
	if !errors.Is(err, evidence.ErrBad) || !strings.Contains(err.Error(), "without a valid signed manifest") {
		t.Fatalf("re-chained history without anchors: %v", err)
	}
	// An anchor signed by another key (the forger's) is refused.
	fk, _ := evidence.GenerateKey()
	var last state.Evidence
	_ = json.Unmarshal([]byte(forged[5]), &last)
	a, _ := evidence.SignAnchor(fk, last.Chain, last.Seq, last.Hash, time.Now(), evidence.ReasonExport)
	ab, _ := evidence.EncodeAnchor(a)
	_, err = evidence.Verify(strings.NewReader(strings.Join(append(forged[:6:6], string(ab)), "\n")), f.pub())
	if !errors.Is(err, evidence.ErrBad) || !strings.Contains(err.Error(), "not a trusted key") {
		t.Fatalf("forger's anchor: %v", err)
	}
}

func TestExportRangeAndLegacyRecords(t *testing.T) {
	// A version 1 record (written before JCS) still verifies with its rule,
	// followed by version 2 records.
	key, _ := evidence.GenerateKey()
	v1 := state.Evidence{Seq: 1, PersonKey: "id:E-1", At: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Kind: "convergence",
		Plan: json.RawMessage(`{"z":1,"a":"<&>"}`), Outcome: "applied"}
	v1.Hash, _ = state.ComputeHash(v1)
	v2 := state.Evidence{Seq: 2, PersonKey: "id:E-2", At: v1.At.Add(time.Hour), Kind: "convergence", PrevHash: v1.Hash, V: state.EvidenceV2, Outcome: "applied"}
	v2.Hash, _ = state.ComputeHash(v2)
	b1, _ := state.EncodeEvidence(v1)
	b2, _ := state.EncodeEvidence(v2)
	if bytes.Contains(b1, []byte(`"v":`)) || !bytes.HasPrefix(b1, []byte(`{"seq":1,`)) {
		t.Fatalf("a version 1 record must encode as before: %s", b1)
	}
	a, _ := evidence.SignAnchor(key, "", 2, v2.Hash, time.Now(), evidence.ReasonExport)
	ab, _ := evidence.EncodeAnchor(a)
	in := string(b1) + "\n" + string(b2) + "\n" + string(ab) + "\n"
	res, err := evidence.Verify(strings.NewReader(in), []ed25519.PublicKey{key.Public().(ed25519.PublicKey)})
	if err != nil || res.Legacy != 1 || res.Records != 2 {
		t.Fatalf("mixed versions: %+v %v", res, err)
	}
}

// TestAuditorRecipe checks the logic of docs/evidence.md's recipe, written
// without this module: parse the line, drop "hash", serialize with sorted
// keys, no spaces and no escaping beyond JSON's own (Python's
// json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)),
// SHA-256, compare; then check prev_hash links and the anchor signature
// over the anchor without "sig".
func TestAuditorRecipe(t *testing.T) {
	f := newFixture(t)
	f.append(t, 3)
	ls := lines(f.export(t))
	prev := ""
	for _, l := range ls[:3] {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		hash := m["hash"].(string)
		delete(m, "hash")
		sum := sha256.Sum256(sortedCompact(t, m))
		if hex.EncodeToString(sum[:]) != hash {
			t.Fatalf("recipe hash differs for %s", l)
		}
		if m["prev_hash"].(string) != prev {
			t.Fatal("recipe link")
		}
		prev = hash
	}
	var am map[string]any
	_ = json.Unmarshal([]byte(ls[3]), &am)
	sig := am["sig"].(string)
	delete(am, "sig")
	if am["head_hash"] != prev {
		t.Fatal("the export anchor must sign the last record")
	}
	var a state.Anchor
	_ = json.Unmarshal([]byte(ls[3]), &a)
	a.Sig = sig
	msg := sortedCompact(t, am)
	want, _ := evidence.AnchorSigningBytes(a)
	if !bytes.Equal(msg, want) {
		t.Fatalf("recipe signing bytes differ:\n%s\n%s", msg, want)
	}
}

// sortedCompact serializes like Python's json.dumps(sort_keys=True,
// separators=(",", ":"), ensure_ascii=False), written by hand here.
func sortedCompact(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			b.WriteByte('{')
			for i, k := range keys {
				if i > 0 {
					b.WriteByte(',')
				}
				walk(k)
				b.WriteByte(':')
				walk(x[k])
			}
			b.WriteByte('}')
		case []any:
			b.WriteByte('[')
			for i, e := range x {
				if i > 0 {
					b.WriteByte(',')
				}
				walk(e)
			}
			b.WriteByte(']')
		case string:
			var e bytes.Buffer
			enc := json.NewEncoder(&e)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(x)
			s := strings.TrimSuffix(e.String(), "\n")
			// Go escapes U+2028/U+2029; Python and RFC 8785 do not.
			s = strings.NewReplacer(`\u2028`, "\u2028", `\u2029`, "\u2029").Replace(s)
			b.WriteString(s)
		case float64:
			b.WriteString(fmt.Sprint(int64(x)))
		case bool:
			fmt.Fprint(&b, x)
		case nil:
			b.WriteString("null")
		default:
			t.Fatalf("unexpected %T", v)
		}
	}
	walk(v)
	return b.Bytes()
}

// The hash is over the canonical form, not the line's bytes: a line
// reformatted with the same content still verifies (the slow path), and
// an edit in a reformatted line is still caught.
func TestReformattedLineVerifiesByContent(t *testing.T) {
	f := newFixture(t)
	f.append(t, 2)
	ls := lines(f.export(t))
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, []byte(ls[0]), "", " "); err != nil {
		t.Fatal(err)
	}
	ls[0] = strings.ReplaceAll(pretty.String(), "\n", "")
	if _, err := evidence.Verify(strings.NewReader(strings.Join(ls, "\n")), f.pub()); err != nil {
		t.Fatalf("reformatted line: %v", err)
	}
	ls[0] = strings.Replace(ls[0], `"applied"`, `"in_sync"`, 1)
	if _, err := evidence.Verify(strings.NewReader(strings.Join(ls, "\n")), f.pub()); !errors.Is(err, evidence.ErrBad) {
		t.Fatalf("edited reformatted line: %v", err)
	}
}

// writeFleetLayout stores n records as the daemon wrote them before
// per-person chains: one fleet chain (no "chain" member), each record's seq
// its stream sequence and prev_hash the hash of the record stored before it,
// whoever the person, on the person's subject. It returns the last hash.
func (f *fixture) writeFleetLayout(t *testing.T, n int, person func(i int) string) (last string) {
	t.Helper()
	st, err := f.js.Stream(t.Context(), jsstate.StreamEvidence)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	seq := info.State.LastSeq
	for i := range n {
		seq++
		e := state.Evidence{Seq: seq, PersonKey: person(i), Email: fmt.Sprintf("old%d@example.com", i), At: time.Now().UTC(),
			Kind: state.EvidenceConvergence, Outcome: "applied", V: state.EvidenceV2, PrevHash: last}
		if e.Hash, err = state.ComputeHash(e); err != nil {
			t.Fatal(err)
		}
		b, err := state.EncodeEvidence(e)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := f.js.Publish(t.Context(), jsstate.EvidenceSubject(e.PersonKey), b, jetstream.WithExpectLastSequence(seq-1))
		if err != nil || ack.Sequence != seq {
			t.Fatalf("store fleet-layout record %d: %v", seq, err)
		}
		last = e.Hash
	}
	return last
}

// TestExportsOfBothLayoutsVerify: an export written before per-person
// chains (one fleet chain: records without "chain", an anchor of chain "")
// and one written after, whose records continue for the same people in
// per-person chains beside the old fleet chain, both verify with the same
// Verify; and a whole chain removed from the new export is caught by its
// signed manifest.
func TestExportsOfBothLayoutsVerify(t *testing.T) {
	f := newFixture(t)
	people := func(i int) string { return fmt.Sprintf("id:E-%d", i%3) }
	last := f.writeFleetLayout(t, 5, people)

	// The export as the previous layout wrote it: the stored bytes, then an
	// export anchor of the fleet chain "" signing seq 5 (no manifest).
	var old bytes.Buffer
	for r, err := range f.log.ScanRaw(t.Context(), time.Time{}, time.Time{}) {
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(r.Raw, []byte(`"chain"`)) {
			t.Fatalf("a fleet-layout record carries a chain: %s", r.Raw)
		}
		old.Write(r.Raw)
		old.WriteByte('\n')
	}
	a, _ := evidence.SignAnchor(f.key, "", 5, last, time.Now(), evidence.ReasonExport)
	ab, _ := evidence.EncodeAnchor(a)
	old.Write(ab)
	old.WriteByte('\n')
	res, err := evidence.Verify(bytes.NewReader(old.Bytes()), f.pub())
	if err != nil || res.Records != 5 || len(res.Chains) != 1 || res.Chains[""].LastSeq != 5 || !res.Chains[""].Anchored {
		t.Fatalf("fleet-layout export: %+v %v", res, err)
	}

	// Now the same people get per-person chains; one new person too.
	f.appendFor(t, 7, func(i int) string { return fmt.Sprintf("id:E-%d", i%4) })
	if _, stored, err := f.an.AnchorHead(t.Context()); err != nil || !stored {
		t.Fatalf("periodic anchoring of the chains: stored=%v %v", stored, err)
	}
	if _, stored, err := f.an.AnchorHead(t.Context()); err != nil || stored {
		t.Fatalf("a second periodic run over unchanged chains stored an anchor (%v)", err)
	}
	// Every chain's head is signed once: the fleet chain's and four people's.
	signed := map[string]bool{}
	for a, err := range f.an.Anchors.Since(t.Context(), time.Time{}) {
		if err != nil {
			t.Fatal(err)
		}
		if signed[a.Chain] {
			t.Errorf("chain %q signed twice by the periodic runs", a.Chain)
		}
		signed[a.Chain] = true
	}
	if len(signed) != 5 || !signed[""] {
		t.Fatalf("periodic anchors sign chains %v, want the fleet chain and 4 people's", signed)
	}
	f.appendFor(t, 2, people)
	out := f.export(t)
	res, err = evidence.Verify(bytes.NewReader(out), f.pub())
	if err != nil {
		t.Fatalf("export across the change of layout: %v\n%s", err, out)
	}
	if res.Records != 14 || len(res.Chains) != 5 || !res.Manifest || res.Chains[""].LastSeq != 5 {
		t.Fatalf("result %+v", res)
	}
	for name, sp := range res.Chains {
		if !sp.Anchored || sp.FirstSeq != 1 || sp.FirstPrev != "" {
			t.Errorf("chain %q: %+v", name, sp)
		}
	}
	e0 := res.Chains[jsstate.EvidenceChain("id:E-0")]
	if e0.LastSeq != 3 { // E-0: records 0 and 4 of the 7, then record 0 of the 2
		t.Errorf("chain of id:E-0 ends at seq %d, want 3", e0.LastSeq)
	}

	// A whole chain taken out of the new export — its records and its
	// anchors — is caught by the signed manifest.
	gone := jsstate.EvidenceChain("id:E-3")
	var kept []string
	for _, l := range lines(out) {
		var x struct {
			Chain string `json:"chain"`
		}
		_ = json.Unmarshal([]byte(l), &x)
		if x.Chain != gone {
			kept = append(kept, l)
		}
	}
	if len(kept) >= len(lines(out)) {
		t.Fatal("the test removed nothing")
	}
	if _, err := evidence.Verify(strings.NewReader(strings.Join(kept, "\n")), f.pub()); !errors.Is(err, evidence.ErrBad) || !strings.Contains(err.Error(), "manifest") {
		t.Fatalf("a whole chain removed: %v", err)
	}
}
