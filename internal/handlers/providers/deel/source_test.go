package deel_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/deel"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources/sourcestest"
)

const deelKey = "test-deel-key"

func deelSign(key, body string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("POST" + body))
	return hex.EncodeToString(m.Sum(nil))
}

func mustDeel(tb testing.TB, secrets ...string) *deel.Source {
	tb.Helper()
	s, err := deel.NewSource(sources.Config{Secrets: secrets})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func deelHeaders(sig string) map[string]string {
	return map[string]string{"x-deel-signature": sig, "x-deel-hmac-label": "jml", "x-deel-webhook-version": "1.0.0"}
}

func TestDeelVectors(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "deel.json")
	now := time.Date(2026, 1, 31, 18, 43, 0, 0, time.UTC)
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			if got := deelSign(v.Key, v.Body); got != v.Signature {
				t.Fatalf("test signer disagrees with the vector: %s", got)
			}
			s := mustDeel(t, "another-subscription", v.Key)
			p, err := s.Parse(sourcestest.NewRequest(v.Body, deelHeaders(v.Signature)), []byte(v.Body), now)
			sourcestest.CheckErr(t, err, nil)
			sourcestest.CheckInvariants(t, "deel", []byte(v.Body), p, now)
			ev := p.Events[0]
			if ev.Type != events.Leaver || ev.Person.ID != deel.ContractPrefix+"abc123" || ev.Person.Attributes["contract_id"] != "abc123" {
				t.Fatalf("event %+v", ev)
			}
			if want := time.Date(2026, 1, 31, 18, 42, 0, 0, time.UTC); !ev.OccurredAt.Equal(want) {
				t.Fatalf("OccurredAt = %v", ev.OccurredAt)
			}
			// Without the "POST" prefix the signature is wrong.
			if _, err := s.Parse(sourcestest.NewRequest(v.Body, deelHeaders(sourcestest.HMACSHA256Hex(v.Key, v.Body))), []byte(v.Body), now); !errors.Is(err, sources.ErrUnauthorized) {
				t.Fatalf("unprefixed signature accepted: %v", err)
			}
		})
	}
}

func TestDeelFixtures(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "deel.json")
	s := mustDeel(t, deelKey)
	now := time.Date(2026, 1, 31, 18, 43, 0, 0, time.UTC)
	for _, fx := range f.Fixtures {
		t.Run(fx.Name, func(t *testing.T) {
			p, err := s.Parse(sourcestest.NewRequest(fx.Body, deelHeaders(deelSign(deelKey, fx.Body))), []byte(fx.Body), now)
			sourcestest.CheckErr(t, err, nil)
			sourcestest.CheckInvariants(t, "deel", []byte(fx.Body), p, now)
			sourcestest.CheckWant(t, "deel", fx.Body, p, fx)
		})
	}
}

func TestDeelRejects(t *testing.T) {
	s := mustDeel(t, deelKey)
	now := time.Now()
	for _, tc := range []struct {
		name, body, sig string
		want            error
	}{
		{"ErrMissing", `{}`, "", sources.ErrUnauthorized},
		{"ErrNotHex", `{}`, "zz", sources.ErrUnauthorized},
		{"ErrNoEventType", `{"data":{"meta":{}}}`, deelSign(deelKey, `{"data":{"meta":{}}}`), events.ErrInvalid},
		{"ErrNoData", `{"timestamp":"x"}`, deelSign(deelKey, `{"timestamp":"x"}`), events.ErrInvalid},
		{"ErrNoResource", `{"data":{"meta":{"event_type":"contract.terminated"}}}`, deelSign(deelKey, `{"data":{"meta":{"event_type":"contract.terminated"}}}`), events.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Parse(sourcestest.NewRequest(tc.body, deelHeaders(tc.sig)), []byte(tc.body), now)
			sourcestest.CheckErr(t, err, tc.want)
		})
	}
}

func FuzzDeel(f *testing.F) {
	ff := sourcestest.LoadFixtures(f, "deel.json")
	for _, fx := range ff.Fixtures {
		f.Add([]byte(fx.Body), true)
	}
	f.Add([]byte(`{"data":{"meta":{"event_type":"contract.status.updated"},"resource":{"status":["x"],"worker":"y"}}}`), true)
	s := mustDeel(f, deelKey)
	f.Fuzz(func(t *testing.T, body []byte, sign bool) {
		now := time.Unix(1_769_884_920, 0)
		sig := "00"
		if sign {
			sig = deelSign(deelKey, string(body))
		}
		p, err := s.Parse(sourcestest.NewRequest(string(body), deelHeaders(sig)), body, now)
		if err != nil {
			if !errors.Is(err, sources.ErrUnauthorized) && !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if !sign {
			t.Fatal("accepted without a valid signature")
		}
		sourcestest.CheckInvariants(t, "deel", body, p, now)
	})
}
