package bamboohr_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/bamboohr"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources/sourcestest"
)

// ---- BambooHR

const bambooKey = "test-private-key"

func bambooSign(key, body, ts string) string {
	return sourcestest.HMACSHA256Hex(key, body+ts)
}

func mustBambooHR(tb testing.TB, secrets ...string) *bamboohr.Source {
	tb.Helper()
	s, err := bamboohr.NewSource(sources.Config{Secrets: secrets})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func bambooRequest(body, ts, sig, contentType string) *http.Request {
	h := map[string]string{"X-BambooHR-Timestamp": ts, "X-BambooHR-Signature": sig}
	if contentType != "" {
		h["Content-Type"] = contentType
	}
	return sourcestest.NewRequest(body, h)
}

func TestBambooHRVectors(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "bamboohr.json")
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			if got := bambooSign(v.Key, v.Body, v.Timestamp); got != v.Signature {
				t.Fatalf("test signer disagrees with the vector: %s", got)
			}
			sec, _ := strconv.ParseInt(v.Timestamp, 10, 64)
			now := time.Unix(sec, 0).Add(30 * time.Second)
			s := mustBambooHR(t, "other-key", v.Key)
			p, err := s.Parse(bambooRequest(v.Body, v.Timestamp, v.Signature, "application/json"), []byte(v.Body), now)
			sourcestest.CheckErr(t, err, nil)
			sourcestest.CheckInvariants(t, "bamboohr", []byte(v.Body), p, now)
			if len(p.Events) != 1 || p.Events[0].Person.ID != "67890" || p.Events[0].ID != sourcestest.SHA256ID(v.Body) {
				t.Fatalf("parsed %+v", p)
			}
			want := time.Date(2026, 1, 31, 18, 42, 0, 0, time.UTC)
			if !p.Events[0].OccurredAt.Equal(want) {
				t.Fatalf("OccurredAt = %v, want %v (the body's timestamp)", p.Events[0].OccurredAt, want)
			}
		})
	}
}

func TestBambooHRFixtures(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "bamboohr.json")
	now := time.Unix(1_769_884_920, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	s := mustBambooHR(t, bambooKey)
	for _, fx := range f.Fixtures {
		t.Run(fx.Name, func(t *testing.T) {
			p, err := s.Parse(bambooRequest(fx.Body, ts, bambooSign(bambooKey, fx.Body, ts), fx.ContentType), []byte(fx.Body), now)
			sourcestest.CheckErr(t, err, nil)
			sourcestest.CheckInvariants(t, "bamboohr", []byte(fx.Body), p, now)
			sourcestest.CheckWant(t, "bamboohr", fx.Body, p, fx)
		})
	}
}

func TestBambooHRRejects(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "bamboohr.json")
	v := f.Vectors[0]
	sec, _ := strconv.ParseInt(v.Timestamp, 10, 64)
	now := time.Unix(sec, 0)
	s := mustBambooHR(t, v.Key)
	iso := now.UTC().Format(time.RFC3339)
	cases := []struct {
		name          string
		body, ts, sig string
		now           time.Time
		want          error
	}{
		{"OK", v.Body, v.Timestamp, v.Signature, now, nil},
		{"OK upper-case hex", v.Body, v.Timestamp, strings.ToUpper(v.Signature), now, nil},
		{"OK ISO timestamp", v.Body, iso, bambooSign(v.Key, v.Body, iso), now, nil},
		{"OK 5 min old", v.Body, v.Timestamp, v.Signature, now.Add(5 * time.Minute), nil},
		{"ErrTooOld", v.Body, v.Timestamp, v.Signature, now.Add(5*time.Minute + time.Second), sources.ErrUnauthorized},
		{"ErrTooNew", v.Body, v.Timestamp, v.Signature, now.Add(-5*time.Minute - time.Second), sources.ErrUnauthorized},
		{"ErrTamperedBody", v.Body + " ", v.Timestamp, v.Signature, now, sources.ErrUnauthorized},
		{"ErrTimestampNotSigned", v.Body, strconv.FormatInt(sec+1, 10), v.Signature, now, sources.ErrUnauthorized},
		{"ErrMissingSignature", v.Body, v.Timestamp, "", now, sources.ErrUnauthorized},
		{"ErrMissingTimestamp", v.Body, "", v.Signature, now, sources.ErrUnauthorized},
		{"ErrTruncatedSignature", v.Body, v.Timestamp, v.Signature[:20], now, sources.ErrUnauthorized},
		{"ErrWrongKey", v.Body, v.Timestamp, bambooSign("nope", v.Body, v.Timestamp), now, sources.ErrUnauthorized},
		{"ErrUnparseableTimestamp", v.Body, "yesterday", bambooSign(v.Key, v.Body, "yesterday"), now, sources.ErrUnauthorized},
		{"ErrNotJSONOrForm", "%%%", v.Timestamp, bambooSign(v.Key, "%%%", v.Timestamp), now, events.ErrInvalid},
		{"ErrNeitherStyle", `{"foo":1}`, v.Timestamp, bambooSign(v.Key, `{"foo":1}`, v.Timestamp), now, events.ErrInvalid},
		{"ErrNoEmployeeID", `{"type":"employee.deleted","data":{}}`, v.Timestamp, bambooSign(v.Key, `{"type":"employee.deleted","data":{}}`, v.Timestamp), now, events.ErrInvalid},
		{"ErrTrailingData", v.Body + "{}", v.Timestamp, bambooSign(v.Key, v.Body+"{}", v.Timestamp), now, events.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Parse(bambooRequest(tc.body, tc.ts, tc.sig, ""), []byte(tc.body), tc.now)
			sourcestest.CheckErr(t, err, tc.want)
			if tc.want == nil && err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNewBambooHRNeedsSecret(t *testing.T) {
	if _, err := bamboohr.NewSource(sources.Config{}); err == nil {
		t.Fatal("no secret accepted")
	}
	if _, err := bamboohr.NewSource(sources.Config{Secrets: []string{"  "}}); err == nil {
		t.Fatal("blank secret accepted")
	}
}

func FuzzBambooHR(f *testing.F) {
	ff := sourcestest.LoadFixtures(f, "bamboohr.json")
	for _, fx := range ff.Fixtures {
		f.Add([]byte(fx.Body), "1769884920", fx.ContentType, true)
	}
	f.Add([]byte("employees[1][action]=Deleted"), "2026-01-31T18:42:00Z", "", true)
	f.Add([]byte(`{"employees":[{"id":1e400}]}`), "1769884920", "", false)
	s := mustBambooHR(f, bambooKey)
	f.Fuzz(func(t *testing.T, body []byte, ts, contentType string, sign bool) {
		now := time.Unix(1_769_884_920, 0)
		sig := "00"
		if sign {
			sig = bambooSign(bambooKey, string(body), ts)
		}
		r := bambooRequest(string(body), ts, sig, contentType)
		p, err := s.Parse(r, body, now)
		if err != nil {
			if !errors.Is(err, sources.ErrUnauthorized) && !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if !sign {
			t.Fatal("accepted without a valid signature")
		}
		sourcestest.CheckInvariants(t, "bamboohr", body, p, now)
		if bytes.Equal(body, nil) && len(p.Events) > 0 {
			t.Fatal("events from an empty body")
		}
	})
}

// TestBambooHRWithoutAPIWarnsAtStart: enabled without API access, the source
// says at start that joiners cannot be provisioned (issue 16).
func TestBambooHRWithoutAPIWarnsAtStart(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	if _, err := bamboohr.NewSource(sources.Config{Secrets: []string{"k"}, Logger: log}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "joiners cannot be provisioned") {
		t.Fatalf("no warning at start: %q", buf.String())
	}
	buf.Reset()
	if _, err := bamboohr.NewSource(sources.Config{Secrets: []string{"k"}, APIURL: "https://api.bamboohr.com/api/gateway.php/acme", APIToken: "t", Logger: log}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "cannot be provisioned") {
		t.Fatalf("warned with the API configured: %q", buf.String())
	}
}
