package scimserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/scimserver"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

const secret = "scim-test-token"

var _ scimserver.Store = (*jsstate.SCIMStore)(nil)
var _ scimserver.Publisher = (*events.Publisher)(nil)

type published struct {
	ev  events.Event
	dup bool
}

// recorder publishes to JetStream for real and remembers what it published.
type recorder struct {
	next scimserver.Publisher
	mu   sync.Mutex
	fail bool
	got  []published
}

func (r *recorder) Publish(ctx context.Context, ev events.Event) (events.PublishResult, error) {
	r.mu.Lock()
	fail := r.fail
	r.mu.Unlock()
	if fail {
		return events.PublishResult{}, errors.New("nats: injected failure")
	}
	res, err := r.next.Publish(ctx, ev)
	if err != nil {
		return res, err
	}
	r.mu.Lock()
	r.got = append(r.got, published{ev: ev, dup: res.Duplicate})
	r.mu.Unlock()
	return res, nil
}

func (r *recorder) setFail(v bool) { r.mu.Lock(); r.fail = v; r.mu.Unlock() }

func (r *recorder) since(n int) []published {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]published(nil), r.got[n:]...)
}

func (r *recorder) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.got) }

type harness struct {
	srv   *scimserver.Server
	rec   *recorder
	store *jsstate.SCIMStore
	nc    *nats.Conn
}

func mustHarness(tb testing.TB, mutate ...func(*scimserver.Options)) *harness {
	tb.Helper()
	_, nc, js := natstest.Run(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := jsstate.OpenSCIM(ctx, js, jsstate.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	rec := &recorder{next: events.NewPublisher(js, nil, nil)}
	o := scimserver.Options{Store: store, Publisher: rec, Secrets: []string{secret}, BaseURL: "https://jml.example.com/scim/v2", Timeout: 3 * time.Second}
	for _, m := range mutate {
		m(&o)
	}
	srv, err := scimserver.New(o)
	if err != nil {
		tb.Fatal(err)
	}
	return &harness{srv: srv, rec: rec, store: store, nc: nc}
}

func (h *harness) do(tb testing.TB, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	tb.Helper()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	} else {
		rd = strings.NewReader("")
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/scim+json")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, req)
	return w
}

func decode(tb testing.TB, w *httptest.ResponseRecorder) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		tb.Fatalf("response is not a JSON object: %v: %q", err, w.Body.String())
	}
	return m
}

// sequence is a fixture file under testdata/scim.
type sequence struct {
	Source string `json:"source"`
	Steps  []struct {
		Name            string            `json:"name"`
		Method          string            `json:"method"`
		Path            string            `json:"path"`
		Body            json.RawMessage   `json:"body"`
		Status          int               `json:"status"`
		Capture         string            `json:"capture"`
		Want            map[string]any    `json:"want"`
		Absent          []string          `json:"absent"`
		WantGroups      []string          `json:"wantGroups"`
		Events          []events.Type     `json:"events"`
		EventsDuplicate bool              `json:"eventsDuplicate"`
		EventStatus     events.Status     `json:"eventStatus"`
		EventEmail      string            `json:"eventEmail"`
		EventGroups     []string          `json:"eventGroups"`
		EventAttrs      map[string]string `json:"eventAttrs"`
	} `json:"steps"`
}

func replay(t *testing.T, file string) *harness {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "scim", file))
	if err != nil {
		t.Fatal(err)
	}
	var seq sequence
	if err := json.Unmarshal(raw, &seq); err != nil {
		t.Fatal(err)
	}
	h := mustHarness(t)
	vars := map[string]string{}
	subst := func(s string) string {
		for k, v := range vars {
			s = strings.ReplaceAll(s, "{{"+k+"}}", v)
		}
		return s
	}
	for i, st := range seq.Steps {
		ok := t.Run(fmt.Sprintf("%02d %s", i, st.Name), func(t *testing.T) {
			before := h.rec.count()
			w := h.do(t, st.Method, subst(st.Path), subst(string(st.Body)))
			if w.Code != st.Status {
				t.Fatalf("status %d, want %d: %s", w.Code, st.Status, w.Body.String())
			}
			if w.Code != http.StatusNoContent && !strings.HasPrefix(w.Header().Get("Content-Type"), "application/scim+json") {
				t.Errorf("Content-Type %q", w.Header().Get("Content-Type"))
			}
			var body map[string]any
			if w.Code != http.StatusNoContent {
				body = decode(t, w)
			} else if w.Body.Len() != 0 {
				t.Errorf("204 with a body: %q", w.Body.String())
			}
			if st.Capture != "" {
				id, _ := body["id"].(string)
				if id == "" {
					t.Fatalf("no id to capture in %v", body)
				}
				vars[st.Capture] = id
				if loc := w.Header().Get("Location"); !strings.HasSuffix(loc, "/"+id) || !strings.HasPrefix(loc, "https://jml.example.com/scim/v2/") {
					t.Errorf("Location %q", loc)
				}
				meta, _ := body["meta"].(map[string]any)
				if meta["location"] != w.Header().Get("Location") || meta["version"] == nil {
					t.Errorf("meta %v", meta)
				}
			}
			for k, want := range st.Want {
				if s, ok := want.(string); ok {
					want = subst(s)
				}
				if got := body[k]; !reflect.DeepEqual(got, want) && !(isEmptyList(got) && isEmptyList(want)) {
					t.Errorf("%s = %#v, want %#v", k, got, want)
				}
			}
			for _, k := range st.Absent {
				if _, ok := body[k]; ok {
					t.Errorf("%s returned: %v", k, body[k])
				}
			}
			if st.WantGroups != nil {
				var names []string
				groups, _ := body["groups"].([]any)
				for _, g := range groups {
					names = append(names, g.(map[string]any)["display"].(string))
				}
				if !slices.Equal(names, st.WantGroups) {
					t.Errorf("groups %v, want %v", names, st.WantGroups)
				}
			}
			got := h.rec.since(before)
			var types []events.Type
			for _, p := range got {
				types = append(types, p.ev.Type)
			}
			if !slices.Equal(types, st.Events) {
				t.Fatalf("published %v, want %v", types, st.Events)
			}
			for _, p := range got {
				if p.dup != st.EventsDuplicate {
					t.Errorf("event %s duplicate=%v, want %v", p.ev.ID, p.dup, st.EventsDuplicate)
				}
				if p.ev.Source != "scim" || p.ev.ID == "" || p.ev.Person.ID != "" || p.ev.Person.Email == "" {
					t.Errorf("event %+v", p.ev)
				}
				if p.ev.Person.Attributes["scim_id"] != vars["user"] {
					t.Errorf("scim_id %q, want %q", p.ev.Person.Attributes["scim_id"], vars["user"])
				}
				if st.EventStatus != "" && p.ev.Person.Status != st.EventStatus {
					t.Errorf("status %q, want %q", p.ev.Person.Status, st.EventStatus)
				}
				if st.EventEmail != "" && p.ev.Person.Email != st.EventEmail {
					t.Errorf("email %q, want %q", p.ev.Person.Email, st.EventEmail)
				}
				if st.EventGroups != nil && !slices.Equal(p.ev.Person.Groups, st.EventGroups) && !(len(p.ev.Person.Groups) == 0 && len(st.EventGroups) == 0) {
					t.Errorf("groups %v, want %v", p.ev.Person.Groups, st.EventGroups)
				}
				for k, v := range st.EventAttrs {
					if p.ev.Person.Attributes[k] != v {
						t.Errorf("attribute %s = %q, want %q", k, p.ev.Person.Attributes[k], v)
					}
				}
			}
		})
		if !ok {
			t.FailNow()
		}
	}
	return h
}

func isEmptyList(v any) bool {
	l, ok := v.([]any)
	return ok && len(l) == 0
}

func TestOktaSequence(t *testing.T) { replay(t, "okta-sequence.json") }

func TestEntraSequence(t *testing.T) {
	h := replay(t, "entra-sequence.json")
	// Every published event landed in JML_EVENTS once, under jml.events.scim.<type>.
	js, err := h.nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.StreamInfo(events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	unique := 0
	for _, p := range h.rec.since(0) {
		if !p.dup {
			unique++
		}
	}
	if int(info.State.Msgs) != unique {
		t.Errorf("stream holds %d messages, %d unique events published", info.State.Msgs, unique)
	}
}

func TestAuth(t *testing.T) {
	h := mustHarness(t, func(o *scimserver.Options) {
		o.Secrets = []string{secret, "Basic YWRtaW46c3VwZXJzZWNyZXQ="}
	})
	tests := []struct {
		name   string
		header string
		want   int
	}{
		{"OK bearer", "Bearer " + secret, 200},
		{"OK bearer lower-case scheme", "bearer " + secret, 200},
		{"OK raw token (Okta header auth)", secret, 200},
		{"OK basic (second secret, rotation)", "Basic YWRtaW46c3VwZXJzZWNyZXQ=", 200},
		{"ErrMissing", "", 401},
		{"ErrWrongToken", "Bearer nope", 401},
		{"ErrPrefix", "Bearer " + secret[:5], 401},
		{"ErrBasicAsBearer", "Bearer Basic YWRtaW46c3VwZXJzZWNyZXQ=", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := h.do(t, "GET", "/scim/v2/Users", "", "Authorization", tt.header)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body.String())
			}
			if tt.want == 401 {
				b := decode(t, w)
				if b["status"] != "401" || w.Header().Get("WWW-Authenticate") == "" {
					t.Errorf("401 body %v, WWW-Authenticate %q", b, w.Header().Get("WWW-Authenticate"))
				}
			}
		})
	}
}

const oktaUser = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"%s","name":{"givenName":"Test","familyName":"User"},"emails":[{"primary":true,"value":"%s","type":"work"}],"active":true}`

func (h *harness) mustCreateUser(tb testing.TB, email string) string {
	tb.Helper()
	w := h.do(tb, "POST", "/scim/v2/Users", fmt.Sprintf(oktaUser, email, email))
	if w.Code != 201 {
		tb.Fatalf("create %s: %d %s", email, w.Code, w.Body.String())
	}
	return decode(tb, w)["id"].(string)
}

const deactivate = `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`

func TestPublishFailureRetry(t *testing.T) {
	h := mustHarness(t)
	id := h.mustCreateUser(t, "jane@acme.com")
	h.rec.setFail(true)
	w := h.do(t, "PATCH", "/scim/v2/Users/"+id, deactivate)
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || decode(t, w)["status"] != "503" {
		t.Fatalf("status %d %v: %s", w.Code, w.Header(), w.Body.String())
	}
	h.rec.setFail(false)
	n := h.rec.count()
	w = h.do(t, "PATCH", "/scim/v2/Users/"+id, deactivate)
	if w.Code != 200 {
		t.Fatalf("retry: %d %s", w.Code, w.Body.String())
	}
	got := h.rec.since(n)
	if len(got) != 1 || got[0].ev.Type != events.Suspend || got[0].dup {
		t.Fatalf("retry published %+v, want one new suspend", got)
	}
	// A further retry publishes the same id again: a duplicate.
	n = h.rec.count()
	h.do(t, "PATCH", "/scim/v2/Users/"+id, deactivate)
	again := h.rec.since(n)
	if len(again) != 1 || !again[0].dup || again[0].ev.ID != got[0].ev.ID {
		t.Fatalf("second retry published %+v", again)
	}
}

func TestDeleteUserPublishFailure(t *testing.T) {
	h := mustHarness(t)
	id := h.mustCreateUser(t, "joe@acme.com")
	h.rec.setFail(true)
	if w := h.do(t, "DELETE", "/scim/v2/Users/"+id, ""); w.Code != 503 {
		t.Fatalf("delete with publisher down: %d", w.Code)
	}
	if w := h.do(t, "GET", "/scim/v2/Users/"+id, ""); w.Code != 200 {
		t.Fatalf("user gone although the leaver was not published: %d", w.Code)
	}
	h.rec.setFail(false)
	n := h.rec.count()
	if w := h.do(t, "DELETE", "/scim/v2/Users/"+id, ""); w.Code != 204 {
		t.Fatalf("retry: %d %s", w.Code, w.Body.String())
	}
	got := h.rec.since(n)
	if len(got) != 1 || got[0].ev.Type != events.Leaver || got[0].ev.Person.Status != events.Terminated || got[0].ev.Person.Email != "joe@acme.com" {
		t.Fatalf("published %+v", got)
	}
	if w := h.do(t, "DELETE", "/scim/v2/Users/"+id, ""); w.Code != 404 {
		t.Fatalf("second delete: %d", w.Code)
	}
	// The userName is free again.
	h.mustCreateUser(t, "joe@acme.com")
}

func TestNATSDown(t *testing.T) {
	h := mustHarness(t)
	id := h.mustCreateUser(t, "ann@acme.com")
	h.nc.Close()
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/scim/v2/Users", fmt.Sprintf(oktaUser, "bob@acme.com", "bob@acme.com")},
		{"GET", "/scim/v2/Users/" + id, ""},
		{"GET", "/scim/v2/Users?filter=userName%20eq%20%22ann%40acme.com%22", ""},
		{"PATCH", "/scim/v2/Users/" + id, deactivate},
	} {
		w := h.do(t, req.method, req.path, req.body)
		if w.Code != 503 {
			t.Errorf("%s %s: %d %s", req.method, req.path, w.Code, w.Body.String())
		}
	}
}

func TestInactiveAsLeaver(t *testing.T) {
	h := mustHarness(t, func(o *scimserver.Options) { o.InactiveType = events.Leaver })
	id := h.mustCreateUser(t, "lee@acme.com")
	n := h.rec.count()
	h.do(t, "PATCH", "/scim/v2/Users/"+id, `{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`)
	got := h.rec.since(n)
	if len(got) != 1 || got[0].ev.Type != events.Leaver || got[0].ev.Person.Status != events.Terminated {
		t.Fatalf("published %+v", got)
	}
}

func TestPagination(t *testing.T) {
	h := mustHarness(t)
	var ids []string
	for i := range 5 {
		ids = append(ids, h.mustCreateUser(t, fmt.Sprintf("u%d@acme.com", i)))
	}
	var seen []string
	for start := 1; start <= 5; start += 2 {
		w := h.do(t, "GET", fmt.Sprintf("/scim/v2/Users?startIndex=%d&count=2", start), "")
		b := decode(t, w)
		if b["totalResults"] != float64(5) || b["startIndex"] != float64(start) {
			t.Fatalf("page %d: %v", start, b)
		}
		for _, r := range b["Resources"].([]any) {
			seen = append(seen, r.(map[string]any)["id"].(string))
		}
	}
	if !slices.Equal(seen, ids) {
		t.Fatalf("pages returned %v, want creation order %v", seen, ids)
	}
	b := decode(t, h.do(t, "GET", "/scim/v2/Users?startIndex=9&count=2", ""))
	if b["itemsPerPage"] != float64(0) || len(b["Resources"].([]any)) != 0 {
		t.Fatalf("past the end: %v", b)
	}
	if w := h.do(t, "GET", "/scim/v2/Users?filter=userName%20gt%20%22a%22", ""); w.Code != 400 || decode(t, w)["scimType"] != "invalidFilter" {
		t.Fatalf("unsupported filter: %d %s", w.Code, w.Body.String())
	}
}

func TestErrors(t *testing.T) {
	h := mustHarness(t)
	id := h.mustCreateUser(t, "err@acme.com")
	tests := []struct {
		name, method, path, body string
		status                   int
		scimType                 string
	}{
		{"ErrNotJSON", "POST", "/scim/v2/Users", `{"userName":`, 400, "invalidSyntax"},
		{"ErrNoUserName", "POST", "/scim/v2/Users", `{"active":true}`, 400, "invalidValue"},
		{"ErrActiveNotBool", "POST", "/scim/v2/Users", `{"userName":"x@acme.com","active":"maybe"}`, 400, "invalidValue"},
		{"ErrPatchNoOps", "PATCH", "/scim/v2/Users/" + id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}`, 400, "invalidSyntax"},
		{"ErrPatchBadOp", "PATCH", "/scim/v2/Users/" + id, `{"Operations":[{"op":"move","path":"active"}]}`, 400, "invalidSyntax"},
		{"ErrPatchBadPath", "PATCH", "/scim/v2/Users/" + id, `{"Operations":[{"op":"replace","path":"emails[type eq","value":"x"}]}`, 400, "invalidPath"},
		{"ErrPatchRemoveNoPath", "PATCH", "/scim/v2/Users/" + id, `{"Operations":[{"op":"remove"}]}`, 400, "noTarget"},
		{"ErrPatchRemoveUserName", "PATCH", "/scim/v2/Users/" + id, `{"Operations":[{"op":"remove","path":"userName"}]}`, 400, "invalidValue"},
		{"ErrPatchUnknownUser", "PATCH", "/scim/v2/Users/nope", deactivate, 404, ""},
		{"ErrPutUnknownUser", "PUT", "/scim/v2/Users/nope", `{"userName":"a@acme.com"}`, 404, ""},
		{"ErrDeleteUnknownGroup", "DELETE", "/scim/v2/Groups/nope", "", 404, ""},
		{"ErrGroupNoName", "POST", "/scim/v2/Groups", `{"members":[]}`, 400, "invalidValue"},
		{"ErrGroupBadMember", "POST", "/scim/v2/Groups", `{"displayName":"g","members":[{"display":"x"}]}`, 400, "invalidValue"},
		{"ErrUnknownEndpoint", "GET", "/scim/v2/Bulk", "", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := h.do(t, tt.method, tt.path, tt.body)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body.String())
			}
			b := decode(t, w)
			if b["status"] != fmt.Sprint(tt.status) || b["scimType"] != nilIfEmpty(tt.scimType) {
				t.Errorf("body %v", b)
			}
			if s, _ := b["schemas"].([]any); len(s) != 1 || s[0] != scimserver.SchemaError {
				t.Errorf("schemas %v", b["schemas"])
			}
		})
	}
	t.Run("ErrRenameToTakenUserName", func(t *testing.T) {
		other := h.mustCreateUser(t, "other@acme.com")
		w := h.do(t, "PATCH", "/scim/v2/Users/"+other, `{"Operations":[{"op":"Replace","path":"userName","value":"ERR@acme.com"}]}`)
		if w.Code != 409 || decode(t, w)["scimType"] != "uniqueness" {
			t.Fatalf("%d %s", w.Code, w.Body.String())
		}
	})
	t.Run("ErrBodyTooLarge", func(t *testing.T) {
		big := `{"userName":"big@acme.com","title":"` + strings.Repeat("x", 2<<20) + `"}`
		if w := h.do(t, "POST", "/scim/v2/Users", big); w.Code != 413 {
			t.Fatalf("%d", w.Code)
		}
	})
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func TestDiscovery(t *testing.T) {
	h := mustHarness(t)
	for _, p := range []string{"/scim/v2/ServiceProviderConfig", "/scim/v2/ResourceTypes", "/scim/v2/ResourceTypes/User",
		"/scim/v2/Schemas", "/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"} {
		w := h.do(t, "GET", p, "")
		if w.Code != 200 {
			t.Errorf("%s: %d %s", p, w.Code, w.Body.String())
		}
	}
	b := decode(t, h.do(t, "GET", "/scim/v2/ServiceProviderConfig", ""))
	if b["patch"].(map[string]any)["supported"] != true || b["bulk"].(map[string]any)["supported"] != false {
		t.Errorf("ServiceProviderConfig %v", b)
	}
}

func TestGroupMembershipFullList(t *testing.T) {
	h := mustHarness(t)
	u := h.mustCreateUser(t, "multi@acme.com")
	mk := func(name string) string {
		w := h.do(t, "POST", "/scim/v2/Groups", fmt.Sprintf(`{"displayName":%q,"members":[{"value":%q}]}`, name, u))
		if w.Code != 201 {
			t.Fatalf("%d %s", w.Code, w.Body.String())
		}
		return decode(t, w)["id"].(string)
	}
	mk("eng")
	n := h.rec.count()
	mk("backend")
	got := h.rec.since(n)
	if len(got) != 1 || !slices.Equal(got[0].ev.Person.Groups, []string{"backend", "eng"}) {
		t.Fatalf("second group published %+v", got)
	}
	// PUT on the group replaces its members: the user leaves "eng".
	var engID string
	b := decode(t, h.do(t, "GET", "/scim/v2/Groups?filter=displayName%20eq%20%22eng%22", ""))
	engID = b["Resources"].([]any)[0].(map[string]any)["id"].(string)
	n = h.rec.count()
	if w := h.do(t, "PUT", "/scim/v2/Groups/"+engID, `{"displayName":"eng","members":[]}`); w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
	got = h.rec.since(n)
	if len(got) != 1 || !slices.Equal(got[0].ev.Person.Groups, []string{"backend"}) {
		t.Fatalf("PUT published %+v", got)
	}
	// Filter on membership (Entra checks membership this way).
	b = decode(t, h.do(t, "GET", fmt.Sprintf("/scim/v2/Groups?filter=members%%5Bvalue%%20eq%%20%%22%s%%22%%5D&excludedAttributes=members", u), ""))
	if b["totalResults"] != float64(1) {
		t.Fatalf("membership filter: %v", b)
	}
	// Deleting the user removes it from its groups.
	h.do(t, "DELETE", "/scim/v2/Users/"+u, "")
	b = decode(t, h.do(t, "GET", "/scim/v2/Groups?filter=displayName%20eq%20%22backend%22", ""))
	if m := b["Resources"].([]any)[0].(map[string]any)["members"]; !isEmptyList(m) {
		t.Fatalf("members after user delete: %v", m)
	}
}

func TestEventIDDeterministic(t *testing.T) {
	// Two servers on separate stores, fed the same requests with the same ids,
	// publish the same event ids: ids depend on (resource, version, operation) only.
	ids := func() []string {
		h := mustHarness(t, func(o *scimserver.Options) { o.NewID = func() string { return "fixed-id" } })
		h.mustCreateUser(t, "det@acme.com")
		h.do(t, "PATCH", "/scim/v2/Users/fixed-id", deactivate)
		var out []string
		for _, p := range h.rec.since(0) {
			out = append(out, p.ev.ID)
		}
		return out
	}
	a, b := ids(), ids()
	if len(a) != 2 || !slices.Equal(a, b) || a[0] == a[1] {
		t.Fatalf("ids %v vs %v", a, b)
	}
}

func TestConcurrentPatches(t *testing.T) {
	h := mustHarness(t)
	id := h.mustCreateUser(t, "race@acme.com")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"Operations":[{"op":"add","path":"phoneNumbers","value":[{"type":"work","value":"+1-555-%04d"}]}]}`, i)
			if w := h.do(t, "PATCH", "/scim/v2/Users/"+id, body); w.Code != 200 {
				t.Errorf("%d %s", w.Code, w.Body.String())
			}
		}()
	}
	wg.Wait()
	b := decode(t, h.do(t, "GET", "/scim/v2/Users/"+id, ""))
	if n := len(b["phoneNumbers"].([]any)); n != 8 {
		t.Fatalf("%d phone numbers after 8 concurrent adds (lost writes)", n)
	}
	if b["meta"].(map[string]any)["version"] != `W/"9"` {
		t.Fatalf("version %v", b["meta"])
	}
}

func TestNewRequiresDependencies(t *testing.T) {
	h := mustHarness(t)
	for name, o := range map[string]scimserver.Options{
		"ErrNoStore":      {Publisher: h.rec, Secrets: []string{"x"}},
		"ErrNoPublisher":  {Store: h.store, Secrets: []string{"x"}},
		"ErrNoSecret":     {Store: h.store, Publisher: h.rec, Secrets: []string{" "}},
		"ErrInactiveType": {Store: h.store, Publisher: h.rec, Secrets: []string{"x"}, InactiveType: events.Joiner},
	} {
		if _, err := scimserver.New(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

var _ = bytes.NewReader
