package app

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/evidence"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// evidenceAPI is a worker with a signing key behind the real admin API,
// with two named operators.
func evidenceAPI(t *testing.T) (*Worker, *httptest.Server, ed25519.PrivateKey) {
	t.Helper()
	key, err := evidence.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	w, _ := testWorker(t, func(o *WorkerOptions) { o.EvidenceKey = key })
	h := AdminHandler(AdminOptions{Worker: w, Operators: []Operator{{Name: "alice", Token: "alice-token-0123456789"}},
		Routes: append(append(EvidenceRoutes(w), ReportRoutes(w)...), AccessRoutes(w)...)})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return w, srv, key
}

func get(t *testing.T, srv *httptest.Server, method, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer alice-token-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

// A leaver converged by the worker, then exported over the admin API: the
// export verifies with the key the API publishes, its record carries the
// trigger, and the deprovisioning report lists the leaver.
func TestEvidenceExportVerifyAndReportOverAdminAPI(t *testing.T) {
	w, srv, key := evidenceAPI(t)
	ctx := context.Background()
	gctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	go func() { _ = w.gate.Run(gctx) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if kind, _ := w.gate.Held(true); kind == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the safety gate did not start")
		}
	}
	p := events.Person{Email: "jane.doe@acme.test", Status: events.Terminated}
	rec, _, err := w.records.Directory.Apply(ctx, p.Key(), p, state.Version{OccurredAt: time.Now().UTC(), Source: "test", Seq: 1}, "ev-1")
	if err != nil {
		t.Fatal(err)
	}
	eff := time.Now().UTC().Add(-time.Minute)
	trig := state.Trigger{Source: "generic", EventID: "ev-1", OccurredAt: eff.Add(-time.Hour), EffectiveAt: eff, ReceivedAt: eff}
	// The lease is held (a real one is the worker's; here the check always passes).
	res, err := w.conv.Converge(state.WithTrigger(ctx, trig), rec, func(context.Context) error { return nil })
	if err != nil || !res.Removed {
		t.Fatalf("converge: %+v %v", res, err)
	}
	code, body := get(t, srv, http.MethodGet, "/v1/evidence/key")
	var k struct {
		PublicKey string `json:"public_key"`
	}
	if code != 200 || json.Unmarshal(body, &k) != nil || k.PublicKey != evidence.EncodePublicKey(key.Public().(ed25519.PublicKey)) {
		t.Fatalf("key: %d %s", code, body)
	}
	code, export := get(t, srv, http.MethodGet, "/v1/evidence/export")
	if code != 200 {
		t.Fatalf("export: %d %s", code, export)
	}
	pub, _ := evidence.ParsePublicKey(k.PublicKey)
	vr, err := evidence.Verify(bytes.NewReader(export), []ed25519.PublicKey{pub})
	if err != nil || vr.Records != 1 {
		t.Fatalf("verify: %+v %v\n%s", vr, err, export)
	}
	var e state.Evidence
	_ = json.Unmarshal(bytes.SplitN(export, []byte("\n"), 2)[0], &e)
	if e.Trigger == nil || e.Trigger.EventID != "ev-1" || !e.Trigger.EffectiveAt.Equal(eff) || e.Status != "terminated" || e.Snapshot == nil || len(e.Requests) == 0 {
		t.Fatalf("record: %+v", e)
	}
	// Tampered on the way: verification names the line.
	bad := bytes.Replace(export, []byte(`"outcome":"applied"`), []byte(`"outcome":"in_sync"`), 1)
	if _, err := evidence.Verify(bytes.NewReader(bad), []ed25519.PublicKey{pub}); !errors.Is(err, evidence.ErrBad) || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("tampered: %v", err)
	}
	from := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	code, body = get(t, srv, http.MethodGet, "/v1/report/deprovisioning?format=json&sla=1h&from="+from)
	var rep struct {
		Rows []struct {
			Email  string `json:"email"`
			SLAMet bool   `json:"sla_met"`
		} `json:"rows"`
	}
	if code != 200 || json.Unmarshal(body, &rep) != nil || len(rep.Rows) != 1 || rep.Rows[0].Email != "jane.doe@acme.test" || !rep.Rows[0].SLAMet {
		t.Fatalf("report: %d %s", code, body)
	}
	code, body = get(t, srv, http.MethodGet, "/v1/report/deprovisioning?format=html&from="+from)
	if code != 200 || !bytes.Contains(body, []byte("<svg")) || !bytes.Contains(body, []byte("jane.doe@acme.test")) {
		t.Fatalf("html report: %d", code)
	}
}

// A signed review's reviewer is the operator of the token, and the record
// holds the snapshot and its digest.
func TestSignedAccessReviewNamesTheOperator(t *testing.T) {
	w, srv, _ := evidenceAPI(t)
	code, body := get(t, srv, http.MethodPost, "/v1/access/review/sign")
	var v struct {
		Reviewer string `json:"reviewer"`
		Seq      uint64 `json:"seq"`
	}
	if code != 200 || json.Unmarshal(body, &v) != nil || v.Reviewer != "alice" || v.Seq == 0 {
		t.Fatalf("sign: %d %.300s", code, body)
	}
	var got state.Evidence
	for e, err := range w.records.Evidence.Range(context.Background(), time.Time{}, time.Time{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = e
	}
	var rr reviewRecord
	if got.Kind != EvidenceAccessReview || got.Operator != "alice" || json.Unmarshal(got.Plan, &rr) != nil || !rr.Inline || rr.Members == 0 || len(rr.SHA256) != 64 {
		t.Fatalf("record: kind=%s operator=%s plan=%.200s", got.Kind, got.Operator, got.Plan)
	}
	// The sign-off runs as a job (the review reads the whole org): asked not
	// to wait, the route answers with the job, which jml jobs lists.
	code, body = get(t, srv, http.MethodPost, "/v1/access/review/sign?wait=0s")
	var started struct {
		ID     string `json:"job_id"`
		Status string `json:"status"`
	}
	if code != 200 || json.Unmarshal(body, &started) != nil || started.ID == "" || started.Status != "running" {
		t.Fatalf("sign with wait=0s: %d %.300s", code, body)
	}
	code, body = get(t, srv, http.MethodGet, "/v1/jobs/"+started.ID)
	if code != 200 || !strings.Contains(string(body), "access review sign-off") || !strings.Contains(string(body), "alice") {
		t.Fatalf("the sign-off job: %d %.300s", code, body)
	}
	// Inactive: the sandbox's users never logged in (lastLogin null), so every non-pending member is listed.
	code, body = get(t, srv, http.MethodGet, "/v1/report/inactive?days=90")
	var in struct {
		Members []InactiveMember `json:"members"`
	}
	if code != 200 || json.Unmarshal(body, &in) != nil || len(in.Members) == 0 {
		t.Fatalf("inactive: %d %.300s", code, body)
	}
	for _, m := range in.Members {
		if m.LastLogin != nil {
			t.Fatalf("%s logged in at %v, listed as inactive", m.Email, m.LastLogin)
		}
	}
}
