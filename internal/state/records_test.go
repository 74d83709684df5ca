package state_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

func chain(t *testing.T, n int) []state.Evidence {
	t.Helper()
	var out []state.Evidence
	prev := ""
	for i := range n {
		e := state.Evidence{Seq: uint64(i + 1), PersonKey: "id:E-1", Kind: state.EvidenceConvergence,
			At: time.Date(2026, 11, 28, 10, 0, i, 0, time.UTC), Plan: json.RawMessage(`{"a":"<&>"}`), PrevHash: prev}
		h, err := state.ComputeHash(e)
		if err != nil {
			t.Fatal(err)
		}
		e.Hash = h
		prev = h
		out = append(out, e)
	}
	return out
}

func seqOf(es []state.Evidence, err error) iter.Seq2[state.Evidence, error] {
	return func(yield func(state.Evidence, error) bool) {
		for _, e := range es {
			if !yield(e, nil) {
				return
			}
		}
		if err != nil {
			yield(state.Evidence{}, err)
		}
	}
}

func TestVerifyChain(t *testing.T) {
	es := chain(t, 5)
	if err := state.VerifyChainFrom("", seqOf(es, nil)); err != nil {
		t.Fatalf("intact: %v", err)
	}
	if err := state.VerifyChain(seqOf(nil, nil)); err != nil {
		t.Fatalf("empty: %v", err)
	}
	boom := errors.New("boom")
	if err := state.VerifyChain(seqOf(es, boom)); !errors.Is(err, boom) || errors.Is(err, state.ErrChainBroken) {
		t.Fatalf("a read error must come back as it is: %v", err)
	}
	bad := append([]state.Evidence(nil), es...)
	bad[0].PrevHash = "x"
	bad[0].Hash, _ = state.ComputeHash(bad[0])
	if err := state.VerifyChain(seqOf(bad[:1], nil)); !errors.Is(err, state.ErrChainBroken) {
		t.Fatalf("seq 1 with a prev_hash: %v", err)
	}
	if err := state.VerifyChainFrom("wrong", seqOf(es[2:], nil)); !errors.Is(err, state.ErrChainBroken) {
		t.Fatalf("wrong anchor: %v", err)
	}
	if err := state.VerifyChainFrom(es[1].Hash, seqOf(es[2:], nil)); err != nil {
		t.Fatalf("right anchor: %v", err)
	}
}

// TestEvidenceHashIsReproducible checks the documented canonical form: the
// stored JSON without "hash", compact, no HTML escaping.
func TestEvidenceHashIsReproducible(t *testing.T) {
	e := chain(t, 1)[0]
	b, err := state.EncodeEvidence(e)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.Contains(s, `"plan":{"a":"<&>"}`) {
		t.Fatalf("plan is escaped or not compact: %s", s)
	}
	i := strings.Index(s, `,"hash":"`)
	if i < 0 || !strings.HasSuffix(s, `"}`) {
		t.Fatalf("hash is not the last field: %s", s)
	}
	sum := sha256.Sum256([]byte(s[:i] + "}"))
	if hex.EncodeToString(sum[:]) != e.Hash {
		t.Fatal("hash is not sha256 of the record without its hash")
	}
	var back state.Evidence
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if h, _ := state.ComputeHash(back); h != e.Hash {
		t.Fatal("hash changes after a JSON round trip")
	}
}
