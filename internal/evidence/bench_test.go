package evidence_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/evidence"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// export100k builds an export of n version 2 records (a leaver's removal
// each, about 1 KiB) and an anchor over the last.
func exportN(b *testing.B, n int) ([]byte, ed25519.PublicKey) {
	b.Helper()
	key, _ := evidence.GenerateKey()
	var buf bytes.Buffer
	prev := ""
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var last state.Evidence
	for i := range n {
		e := state.Evidence{Seq: uint64(i + 1), V: state.EvidenceV2, PersonKey: fmt.Sprintf("id:E-%06d", i), Email: fmt.Sprintf("p%06d@acme.test", i),
			At: at.Add(time.Duration(i) * time.Second), Kind: "convergence", Status: "terminated", Target: "sentry", Outcome: "applied", PrevHash: prev,
			Plan:    json.RawMessage(`{"outcome":"applied"}`),
			Steps:   json.RawMessage(`[{"action":"remove_member","member_id":"1000005","result":"done","via":"rest"}]`),
			Trigger: &state.Trigger{Source: "generic", EventID: fmt.Sprintf("msg_%d", i), OccurredAt: at, ReceivedAt: at},
			Snapshot: &state.Snapshot{PersonKey: "k", Email: "e@acme.test", MemberID: "1000005", OrgRole: "member",
				Teams: []state.TeamAccess{{Slug: "payments", Role: "admin"}, {Slug: "mobile"}}},
			Requests: []state.SentryRequest{{Method: "GET", Path: "/api/0/organizations/acme/members/1000005/", Status: 200, At: at, DurationMS: 3},
				{Method: "DELETE", Path: "/api/0/organizations/acme/members/1000005/", Status: 204, At: at, DurationMS: 4}}}
		h, err := state.ComputeHash(e)
		if err != nil {
			b.Fatal(err)
		}
		e.Hash, prev = h, h
		raw, _ := state.EncodeEvidence(e)
		buf.Write(raw)
		buf.WriteByte('\n')
		last = e
	}
	a, _ := evidence.SignAnchor(key, "", last.Seq, last.Hash, at, evidence.ReasonExport)
	ab, _ := evidence.EncodeAnchor(a)
	buf.Write(ab)
	buf.WriteByte('\n')
	return buf.Bytes(), key.Public().(ed25519.PublicKey)
}

// BenchmarkVerify100k: verify 100,000 records (target: <= 5 s).
func BenchmarkVerify100k(b *testing.B) {
	data, pub := exportN(b, 100_000)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		res, err := evidence.Verify(bytes.NewReader(data), []ed25519.PublicKey{pub})
		if err != nil || res.Records != 100_000 {
			b.Fatalf("%+v %v", res, err)
		}
	}
}

// BenchmarkDecodeFloor100k is the floor: a plain JSON decode of every line.
func BenchmarkDecodeFloor100k(b *testing.B) {
	data, _ := exportN(b, 100_000)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			var m map[string]any
			if err := json.Unmarshal(l, &m); err != nil {
				b.Fatal(err)
			}
		}
	}
}
