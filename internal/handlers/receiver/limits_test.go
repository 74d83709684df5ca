package receiver_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/bamboohr"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/deel"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/generic"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/gusto"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/hibob"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/okta"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/personio"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/rippling"
	"github.com/sentry-jml/sentry-jml/internal/handlers/receiver"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

const hmacKey = "provider-signing-key"

// allSources returns every webhook source, configured, and a function that
// builds a signed request carrying one person (id and email) for each.
func allSources(t *testing.T) ([]sources.Source, map[string]func(id, email string, at time.Time) *http.Request) {
	t.Helper()
	cfg := sources.Config{Secrets: []string{hmacKey}}
	must := func(s sources.Source, err error) sources.Source {
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	gen, err := generic.NewSource([]string{secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srcs := []sources.Source{
		gen,
		must(okta.NewSource(cfg)),
		must(bamboohr.NewSource(cfg)),
		must(hibob.NewSource(cfg)),
		must(personio.NewSource(cfg)),
		must(deel.NewSource(cfg)),
		must(rippling.NewSource(cfg)),
		must(gusto.NewSource(cfg, nil)),
	}
	hexMAC := func(parts ...string) string {
		m := hmac.New(sha256.New, []byte(hmacKey))
		for _, p := range parts {
			m.Write([]byte(p))
		}
		return hex.EncodeToString(m.Sum(nil))
	}
	var n atomic.Int64
	uniq := func() string { return "evt-" + strconv.FormatInt(n.Add(1), 10) }
	req := func(name, body string, hdr map[string]string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/hooks/"+name, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		return r
	}
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	build := map[string]func(id, email string, at time.Time) *http.Request{
		"generic": func(id, email string, at time.Time) *http.Request {
			body := js(map[string]any{"type": "leaver", "occurred_at": at.UTC().Format(time.RFC3339), "person": map[string]any{"id": id, "email": email}})
			key, _ := signature.DecodeStandardSecret(secret)
			wid, now := uniq(), time.Now()
			return req("generic", body, map[string]string{"webhook-id": wid, "webhook-timestamp": strconv.FormatInt(now.Unix(), 10),
				"webhook-signature": signature.Sign(key, wid, now, []byte(body))})
		},
		"okta": func(id, email string, at time.Time) *http.Request {
			body := js(map[string]any{"eventType": "com.okta.event_hook", "eventId": uniq(), "data": map[string]any{"events": []any{map[string]any{
				"uuid": uniq(), "eventType": "user.lifecycle.deactivate", "published": at.UTC().Format(time.RFC3339), "outcome": map[string]any{"result": "SUCCESS"},
				"target": []any{map[string]any{"id": id, "type": "User", "alternateId": email}}}}}})
			return req("okta", body, map[string]string{"Authorization": hmacKey})
		},
		"bamboohr": func(id, email string, at time.Time) *http.Request {
			body := js(map[string]any{"type": "employee.deleted", "timestamp": at.UTC().Format("2006-01-02T15:04:05-0700"), "data": map[string]any{"companyId": "1", "employeeId": id, "workEmail": email}})
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			return req("bamboohr", body, map[string]string{"X-BambooHR-Timestamp": ts, "X-BambooHR-Signature": hexMAC(body, ts)})
		},
		"hibob": func(id, email string, at time.Time) *http.Request {
			body := js(map[string]any{"companyId": 1, "type": "employee.left", "triggeredAt": at.UTC().Format("2006-01-02T15:04:05.000000"), "id": uniq(), "version": "v2",
				"data": map[string]any{"employeeId": id, "email": email}})
			m := hmac.New(sha512.New, []byte(hmacKey))
			m.Write([]byte(body))
			return req("hibob", body, map[string]string{"Bob-Signature": base64.StdEncoding.EncodeToString(m.Sum(nil))})
		},
		"personio": func(id, email string, at time.Time) *http.Request {
			body := js(map[string]any{"company_id": 1, "event_name": "person.deleted", "occurred_at": at.UTC().Format(time.RFC3339), "payload": map[string]any{"id": id, "email": email}})
			return req("personio", body, map[string]string{"Authorization": hmacKey})
		},
		"deel": func(id, email string, at time.Time) *http.Request {
			body := js(map[string]any{"data": map[string]any{"meta": map[string]any{"event_type": "contract.terminated"}, "resource": map[string]any{"id": uniq(), "worker_id": id, "worker_email": email}},
				"timestamp": at.UTC().Format(time.RFC3339)})
			return req("deel", body, map[string]string{"x-deel-signature": hexMAC("POST", body)})
		},
		"rippling": func(id, email string, at time.Time) *http.Request {
			body := url.Values{"event_name": {"employee.terminated"}, "company_id": {"c1"}, "id": {id}, "nonce": {uniq()}}.Encode()
			r := req("rippling", body, map[string]string{"Authorization": hmacKey})
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		},
		"gusto": func(id, email string, at time.Time) *http.Request {
			body := js(map[string]any{"uuid": uniq(), "event_type": "employee.terminated_effective", "entity_type": "Employee", "entity_uuid": id, "timestamp": at.Unix()})
			return req("gusto", body, map[string]string{"X-Gusto-Signature": hexMAC(body)})
		},
	}
	return srcs, build
}

// TestLimitsAtEveryEntryPoint drives the largest allowed and the first refused
// id and email through every source into a real JetStream: the limits hold,
// nothing over them is published, and the shared NATS connection survives
// (an id of ~3 KB once made the server close it).
func TestLimitsAtEveryEntryPoint(t *testing.T) {
	_, nc, js := natstest.Run(t)
	if err := events.EnsureStreams(context.Background(), js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	srcs, build := allSources(t)
	rcv, err := receiver.New(receiver.Options{Publisher: events.NewPublisher(js, nil, nil), Sources: srcs})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(r *http.Request) (int, string) {
		rec := httptest.NewRecorder()
		rcv.ServeHTTP(rec, r)
		return rec.Code, rec.Body.String()
	}
	okEmail := func(n int) string { return strings.Repeat("a", 64) + "@" + strings.Repeat("b", n-65-4) + ".com" }
	now := time.Now()
	maxID, longID := strings.Repeat("9", events.MaxIDLen), strings.Repeat("9", events.MaxIDLen+1)
	maxEmail, longEmail := okEmail(events.MaxEmailLen), okEmail(events.MaxEmailLen+1)
	if len(maxEmail) != 254 || len(longEmail) != 255 {
		t.Fatalf("email sizes %d %d", len(maxEmail), len(longEmail))
	}
	for _, s := range srcs {
		name := s.Name()
		t.Run(name, func(t *testing.T) {
			published := func() uint64 {
				info, err := js.Stream(context.Background(), events.StreamEvents)
				if err != nil {
					t.Fatal(err)
				}
				i, _ := info.Info(context.Background())
				return i.State.Msgs
			}
			before := published()
			email := maxEmail
			if name == "rippling" || name == "gusto" || name == "bamboohr" {
				email = "" // id-only payloads (BambooHR's event-based style)
			}
			code, body := serve(build[name](maxID, email, now))
			if code/100 != 2 || strings.Contains(body, `"ignored"`) {
				t.Fatalf("largest allowed id and email: %d %s", code, body)
			}
			if published() != before+1 {
				t.Fatalf("largest allowed: not published (%d → %d)", before, published())
			}
			refused := []struct{ what, id, email string }{{"id", longID, ""}, {"id with a control character", "E-1\x01", ""}, {"3 KB id", strings.Repeat("x", 3000), ""}}
			if email != "" {
				refused = append(refused, struct{ what, id, email string }{"email", "E-2", longEmail})
			}
			for _, c := range refused {
				code, body := serve(build[name](c.id, c.email, now))
				switch {
				case code == http.StatusBadRequest:
				case name == "okta" && code == http.StatusOK && strings.Contains(body, `"ignored":1`):
					// Okta does not retry a 4xx: the event is dropped, the delivery acknowledged.
				default:
					t.Fatalf("%s over the limit: %d %s", c.what, code, body)
				}
			}
			if published() != before+1 {
				t.Fatalf("something over the limits was published")
			}
			if nc.Status() != nats.CONNECTED {
				t.Fatalf("NATS connection %v", nc.Status())
			}
		})
	}
}

// TestFutureTimesRefusedEverywhere: an event time more than the tolerance
// ahead of the clock is a 400 for every source that carries one (a forged
// event from the year 5138 would outrank every genuine later one).
func TestFutureTimesRefusedEverywhere(t *testing.T) {
	_, _, js := natstest.Run(t)
	if err := events.EnsureStreams(context.Background(), js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	srcs, build := allSources(t)
	rcv, err := receiver.New(receiver.Options{Publisher: events.NewPublisher(js, nil, nil), Sources: srcs, MaxClockSkew: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range srcs {
		name := s.Name()
		if name == "rippling" { // no time in the body: the receipt time is used
			continue
		}
		t.Run(name, func(t *testing.T) {
			for _, c := range []struct {
				ahead time.Duration
				ok    bool
			}{{4 * time.Minute, true}, {6 * time.Minute, false}, {24 * time.Hour * 365 * 200, false}} {
				rec := httptest.NewRecorder()
				rcv.ServeHTTP(rec, build[name]("E-"+strconv.Itoa(int(c.ahead/time.Minute)), "future@acme.test", time.Now().Add(c.ahead)))
				accepted := rec.Code/100 == 2 && !strings.Contains(rec.Body.String(), `"ignored"`)
				if accepted != c.ok {
					t.Fatalf("%s ahead: %d %s", c.ahead, rec.Code, rec.Body)
				}
				if !c.ok && name != "okta" && rec.Code != http.StatusBadRequest {
					t.Fatalf("%s ahead: want 400, got %d", c.ahead, rec.Code)
				}
			}
		})
	}
	t.Run("generic effective_at", func(t *testing.T) {
		key, _ := signature.DecodeStandardSecret(secret)
		for _, c := range []struct {
			ahead time.Duration
			want  int
		}{{300 * 24 * time.Hour, http.StatusAccepted}, {400 * 24 * time.Hour, http.StatusBadRequest}} {
			body := fmt.Sprintf(`{"type":"leaver","effective_at":%q,"person":{"id":"E-eff-%d"}}`, time.Now().Add(c.ahead).UTC().Format(time.RFC3339), c.want)
			id, now := "eff-"+strconv.Itoa(c.want), time.Now()
			r := httptest.NewRequest(http.MethodPost, "/hooks/generic", strings.NewReader(body))
			r.Header.Set("webhook-id", id)
			r.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
			r.Header.Set("webhook-signature", signature.Sign(key, id, now, []byte(body)))
			rec := httptest.NewRecorder()
			rcv.ServeHTTP(rec, r)
			if rec.Code != c.want {
				t.Fatalf("effective_at %s ahead: %d %s", c.ahead, rec.Code, rec.Body)
			}
		}
	})
}

// countingBody records whether the handler read the body.
type countingBody struct {
	io.Reader
	read atomic.Bool
}

func (c *countingBody) Read(p []byte) (int, error) { c.read.Store(true); return c.Reader.Read(p) }
func (c *countingBody) Close() error               { return nil }

// TestStaticTokensCheckedBeforeTheBody: Personio, Rippling and Okta answer 401
// to a wrong token without reading a byte of the body.
func TestStaticTokensCheckedBeforeTheBody(t *testing.T) {
	srcs, _ := allSources(t)
	rcv, err := receiver.New(receiver.Options{Publisher: nopPublisher{}, Sources: srcs})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"personio", "rippling", "okta"} {
		b := &countingBody{Reader: bytes.NewReader(bytes.Repeat([]byte("x"), 1<<20))}
		r := httptest.NewRequest(http.MethodPost, "/hooks/"+name, nil)
		r.Body = b
		r.Header.Set("Authorization", "Bearer wrong")
		rec := httptest.NewRecorder()
		rcv.ServeHTTP(rec, r)
		if rec.Code != http.StatusUnauthorized || b.read.Load() {
			t.Fatalf("%s: %d, body read: %v", name, rec.Code, b.read.Load())
		}
	}
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, events.Event) (events.PublishResult, error) {
	return events.PublishResult{Sequence: 1}, nil
}

// TestArbitraryBodiesEveryRoute is a property test: random bodies, headers and
// methods on every route answer 2xx or 4xx (never 5xx, never a panic), and
// readiness, which checks the real NATS connection, stays ready.
func TestArbitraryBodiesEveryRoute(t *testing.T) {
	_, nc, js := natstest.Run(t)
	if err := events.EnsureStreams(context.Background(), js, events.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	srcs, build := allSources(t)
	ready := func(context.Context) error {
		if nc.Status() != nats.CONNECTED {
			return fmt.Errorf("nats %v", nc.Status())
		}
		return nil
	}
	rcv, err := receiver.New(receiver.Options{Publisher: events.NewPublisher(js, nil, nil), Sources: srcs, Ready: ready, MaxBody: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	pieces := []string{`{`, `}`, `[`, `]`, `"`, `:`, `,`, `null`, `"type"`, `"person"`, `"id"`, `"email"`, `"event_name"`, `"data"`, `"events"`,
		`"leaver"`, `"employee.terminated"`, "\xff", "\x00", "\n", `\u0000`, strings.Repeat("A", 3000), `"verification_token"`, `=`, `&`, `1e999`, `-0`}
	randomBody := func() []byte {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return []byte(b.String())
	}
	var routes []string
	for _, s := range srcs {
		routes = append(routes, "/hooks/"+s.Name())
	}
	routes = append(routes, "/healthz", "/readyz", "/hooks/unknown", "/"+strings.Repeat("z", 5000))
	for i := range 600 {
		route := routes[rng.IntN(len(routes))]
		method := []string{http.MethodPost, http.MethodGet, http.MethodPut}[rng.IntN(3)]
		var r *http.Request
		if strings.HasPrefix(route, "/hooks/") && i%3 == 0 && build[strings.TrimPrefix(route, "/hooks/")] != nil {
			// A validly signed request with hostile values.
			vals := []string{"", strings.Repeat("é", 200), "a\x7fb", strings.Repeat("1", 257), "x@y.z", "Jane <j@x.z>", string(randomBody())}
			r = build[strings.TrimPrefix(route, "/hooks/")](vals[rng.IntN(len(vals))], vals[rng.IntN(len(vals))], time.Now().Add(time.Duration(rng.Int64N(int64(time.Hour)))-30*time.Minute))
		} else {
			r = httptest.NewRequest(method, "/", bytes.NewReader(randomBody()))
			r.URL.Path = route
			r.Header.Set("Authorization", string(randomBody()))
			r.Header.Set("webhook-id", string(randomBody()))
		}
		rec := httptest.NewRecorder()
		rcv.ServeHTTP(rec, r)
		if rec.Code < 200 || rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", r.Method, route, rec.Code, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	rcv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("readiness after the storm: %d %s", rec.Code, rec.Body)
	}
	var _ jetstream.JetStream = js
}
