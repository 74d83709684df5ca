package gusto_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/gusto"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources/sourcestest"
)

// memKeys is a KeyStore (and KeyLoader) shared by "replicas" in these tests;
// jsstate.SourceKeys is tested against a real JetStream in its package.
type memKeys struct {
	mu         sync.Mutex
	tokens     []string
	err        error
	saves      int
	armedUntil time.Time
}

// arm opens the store for one verification POST (jml sources arm gusto).
func (m *memKeys) arm() *memKeys {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.armedUntil = time.Now().Add(10 * time.Minute)
	return m
}

func (m *memKeys) ClaimVerificationToken(_ context.Context, token string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saves++
	if m.err != nil {
		return false, m.err
	}
	for _, t := range m.tokens {
		if t == token {
			return true, nil
		}
	}
	if !time.Now().Before(m.armedUntil) {
		return false, nil
	}
	m.tokens, m.armedUntil = append(m.tokens, token), time.Time{}
	return true, nil
}

func (m *memKeys) ArmedUntil(context.Context) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.armedUntil, m.err
}

func (m *memKeys) VerificationTokens(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.tokens...), m.err
}

// saveOnly is a KeyStore that cannot list tokens.
type saveOnly struct{ m *memKeys }

func (s saveOnly) ClaimVerificationToken(ctx context.Context, t string) (bool, error) {
	return s.m.ClaimVerificationToken(ctx, t)
}

func (s saveOnly) ArmedUntil(ctx context.Context) (time.Time, error) { return s.m.ArmedUntil(ctx) }

func gustoRequest(body, sig string) *http.Request {
	return sourcestest.NewRequest(body, map[string]string{"X-Gusto-Signature": sig, "Content-Type": "application/json"})
}

func mustGusto(tb testing.TB, store gusto.KeyStore, now func() time.Time, secrets ...string) *gusto.Source {
	tb.Helper()
	g, err := gusto.NewSource(sources.Config{Secrets: secrets, Now: now}, store)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

func TestGustoVectors(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "gusto.json")
	now := time.Unix(1_671_058_900, 0)
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			if got := sourcestest.HMACSHA256Hex(v.Key, v.Body); got != v.Signature { // same hex HMAC-SHA256, no timestamp
				t.Fatalf("test signer disagrees with the vector: %s", got)
			}
			g := mustGusto(t, nil, nil, v.Key)
			p, err := g.Parse(gustoRequest(v.Body, v.Signature), []byte(v.Body), now)
			sourcestest.CheckErr(t, err, nil)
			sourcestest.CheckInvariants(t, "gusto", []byte(v.Body), p, now)
			ev := p.Events[0]
			if ev.ID != "03ffbf0c-48a9-4f1c-932a-546413a26ad1" || ev.Type != events.Leaver || ev.Person.ID != "bcfc9744-0ab3-4ef3-ab0d-e728255d659c" {
				t.Fatalf("event %+v", ev)
			}
			if !ev.OccurredAt.Equal(time.Unix(1671058841, 0)) {
				t.Fatalf("OccurredAt = %v", ev.OccurredAt)
			}
			if _, err := g.Parse(gustoRequest(v.Body+" ", v.Signature), []byte(v.Body+" "), now); !errors.Is(err, sources.ErrUnauthorized) {
				t.Fatalf("tampered body: %v", err)
			}
		})
	}
}

func TestGustoFixtures(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "gusto.json")
	key := f.Vectors[0].Key
	g := mustGusto(t, nil, nil, key)
	now := time.Unix(1_671_058_900, 0)
	for _, fx := range f.Fixtures {
		t.Run(fx.Name, func(t *testing.T) {
			p, err := g.Parse(gustoRequest(fx.Body, sourcestest.HMACSHA256Hex(key, fx.Body)), []byte(fx.Body), now)
			sourcestest.CheckErr(t, err, nil)
			sourcestest.CheckInvariants(t, "gusto", []byte(fx.Body), p, now)
			sourcestest.CheckWant(t, "gusto", fx.Body, p, fx)
		})
	}
}

func handshake(g *gusto.Source, body string) (bool, int) {
	rec := httptest.NewRecorder()
	ok := g.Handshake(rec, gustoRequest(body, ""), []byte(body))
	return ok, rec.Code
}

func TestGustoHandshake(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "gusto.json")
	v := f.Vectors[0]
	now := time.Unix(1_671_058_900, 0)

	t.Run("ErrNotArmed: the first caller never sets the key", func(t *testing.T) {
		store := &memKeys{}
		g := mustGusto(t, store, nil)
		if g.Open(context.Background()) {
			t.Fatal("route open without a key or an arming")
		}
		if ok, code := handshake(g, `{"verification_token":"attacker-token"}`); !ok || code != http.StatusNotFound {
			t.Fatalf("unarmed verification POST = %v %d", ok, code)
		}
		if len(store.tokens) != 0 || g.Configured() {
			t.Fatalf("attacker token stored: %v", store.tokens)
		}
	})
	t.Run("OK armed: exactly one verification POST", func(t *testing.T) {
		store := (&memKeys{}).arm()
		g := mustGusto(t, store, nil)
		if !g.Open(context.Background()) {
			t.Fatal("armed route closed")
		}
		if ok, code := handshake(g, f.VerificationBody); !ok || code != http.StatusOK {
			t.Fatalf("armed handshake = %v %d", ok, code)
		}
		// The arming is used up: a second, different token is refused.
		if ok, code := handshake(g, `{"verification_token":"attacker-token"}`); !ok || code != http.StatusUnauthorized {
			t.Fatalf("second token after the arming = %v %d", ok, code)
		}
		if len(store.tokens) != 1 || store.tokens[0] != v.Key || !store.armedUntil.IsZero() {
			t.Fatalf("store = %v armed until %v", store.tokens, store.armedUntil)
		}
	})
	t.Run("ErrArmingExpired", func(t *testing.T) {
		store := &memKeys{armedUntil: time.Now().Add(-time.Second)}
		g := mustGusto(t, store, nil)
		if g.Open(context.Background()) {
			t.Fatal("route open after the arming expired")
		}
		if ok, code := handshake(g, f.VerificationBody); !ok || code != http.StatusNotFound {
			t.Fatalf("verification POST after expiry = %v %d", ok, code)
		}
	})
	t.Run("OK unconfigured: only the verification POST, then events", func(t *testing.T) {
		store := (&memKeys{}).arm()
		g := mustGusto(t, saveOnly{store}, nil)
		if g.Configured() {
			t.Fatal("configured without a key")
		}
		if _, err := g.Parse(gustoRequest(v.Body, v.Signature), []byte(v.Body), now); !errors.Is(err, sources.ErrUnauthorized) {
			t.Fatalf("event accepted before the handshake: %v", err)
		}
		if ok, code := handshake(g, f.VerificationBody); !ok || code != http.StatusOK {
			t.Fatalf("handshake = %v %d", ok, code)
		}
		if len(store.tokens) != 1 || store.tokens[0] != v.Key {
			t.Fatalf("store = %v", store.tokens)
		}
		if _, err := g.Parse(gustoRequest(v.Body, v.Signature), []byte(v.Body), now); err != nil {
			t.Fatalf("event after handshake: %v", err)
		}
		if ok, code := handshake(g, f.VerificationBody); !ok || code != http.StatusOK {
			t.Fatalf("repeated verification POST = %v %d", ok, code)
		}
		if store.saves != 1 {
			t.Fatalf("saves = %d", store.saves)
		}
	})
	t.Run("ErrSecondToken", func(t *testing.T) {
		store := (&memKeys{}).arm()
		g := mustGusto(t, store, nil)
		handshake(g, f.VerificationBody)
		if ok, code := handshake(g, `{"verification_token":"attacker-token"}`); !ok || code != http.StatusUnauthorized {
			t.Fatalf("second token = %v %d", ok, code)
		}
		if ok, code := handshake(mustGusto(t, nil, nil, v.Key), `{"verification_token":"attacker-token"}`); !ok || code != http.StatusUnauthorized {
			t.Fatalf("token against configured secret = %v %d", ok, code)
		}
		forged := `{"uuid":"x","event_type":"employee.terminated_effective","entity_type":"Employee","entity_uuid":"e","timestamp":1}`
		if _, err := g.Parse(gustoRequest(forged, sourcestest.HMACSHA256Hex("attacker-token", forged)), []byte(forged), now); !errors.Is(err, sources.ErrUnauthorized) {
			t.Fatalf("forged event: %v", err)
		}
	})
	t.Run("ErrStoreDown", func(t *testing.T) {
		store := (&memKeys{}).arm()
		store.err = errors.New("nats down")
		g := mustGusto(t, saveOnly{store}, nil)
		if ok, code := handshake(g, f.VerificationBody); !ok || code != http.StatusServiceUnavailable {
			t.Fatalf("handshake = %v %d", ok, code)
		}
		if g.Configured() {
			t.Fatal("configured although the token was not stored")
		}
	})
	t.Run("ErrEmptyToken", func(t *testing.T) {
		g := mustGusto(t, &memKeys{}, nil)
		if ok, code := handshake(g, `{"verification_token":""}`); !ok || code != http.StatusBadRequest {
			t.Fatalf("handshake = %v %d", ok, code)
		}
	})
	t.Run("events and GETs are not handshakes", func(t *testing.T) {
		g := mustGusto(t, &memKeys{}, nil)
		if ok, _ := handshake(g, v.Body); ok {
			t.Fatal("event handled as handshake")
		}
		if g.Handshake(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/hooks/gusto", nil), nil) {
			t.Fatal("GET handled")
		}
	})
	t.Run("OK replica picks up a token another replica stored", func(t *testing.T) {
		store := (&memKeys{}).arm()
		clock := time.Unix(1_800_000_000, 0)
		tick := func() time.Time { return clock }
		a, b := mustGusto(t, store, tick), mustGusto(t, store, tick)
		// b looks first (and finds nothing), then a stores the token.
		if _, err := b.Parse(gustoRequest(v.Body, v.Signature), []byte(v.Body), now); !errors.Is(err, sources.ErrUnauthorized) {
			t.Fatal(err)
		}
		handshake(a, f.VerificationBody)
		if _, err := b.Parse(gustoRequest(v.Body, v.Signature), []byte(v.Body), now); !errors.Is(err, sources.ErrUnauthorized) {
			t.Fatalf("reloaded before the interval: %v", err)
		}
		clock = clock.Add(gusto.ReloadInterval)
		if _, err := b.Parse(gustoRequest(v.Body, v.Signature), []byte(v.Body), now); err != nil {
			t.Fatalf("after the reload interval: %v", err)
		}
	})
	t.Run("ErrNoSecretNoStore", func(t *testing.T) {
		if _, err := gusto.NewSource(sources.Config{}, nil); err == nil {
			t.Fatal("accepted")
		}
	})
}

func FuzzGusto(f *testing.F) {
	ff := sourcestest.LoadFixtures(f, "gusto.json")
	for _, fx := range ff.Fixtures {
		f.Add([]byte(fx.Body), true)
	}
	f.Add([]byte(ff.VerificationBody), false)
	f.Add([]byte(`{"verification_token":"a","event_type":"employee.created"}`), true)
	key := ff.Vectors[0].Key
	f.Fuzz(func(t *testing.T, body []byte, sign bool) {
		now := time.Unix(1_671_058_900, 0)
		g := mustGusto(t, &memKeys{}, nil, key)
		unconfigured := mustGusto(t, &memKeys{}, nil)
		_, _ = handshake(unconfigured, string(body))
		_, _ = handshake(g, string(body))
		sig := "00"
		if sign {
			sig = sourcestest.HMACSHA256Hex(key, string(body))
		}
		p, err := g.Parse(gustoRequest(string(body), sig), body, now)
		if err != nil {
			if !errors.Is(err, sources.ErrUnauthorized) && !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if !sign {
			t.Fatal("accepted without a valid signature")
		}
		sourcestest.CheckInvariants(t, "gusto", body, p, now)
	})
}

// TestGustoThroughReceiver drives the handshake and an event through the real
// receiver: what Gusto sees on the wire.
func TestGustoThroughReceiver(t *testing.T) {
	f := sourcestest.LoadFixtures(t, "gusto.json")
	v := f.Vectors[0]
	pub := &sourcestest.Publisher{}
	store := &memKeys{}
	g := mustGusto(t, store, nil)
	hdr := map[string]string{"X-Gusto-Signature": v.Signature, "Content-Type": "application/json"}
	// Not armed, no key: the route does not exist, for events and for the
	// verification POST alike.
	for _, body := range []string{v.Body, f.VerificationBody} {
		if rec := sourcestest.ServeHook(t, g, pub, http.MethodPost, body, hdr); rec.Code != http.StatusNotFound {
			t.Fatalf("before arming: %d %s", rec.Code, rec.Body)
		}
	}
	store.arm()
	time.Sleep(1100 * time.Millisecond) // the closed route re-reads the arming at most every second
	if rec := sourcestest.ServeHook(t, g, pub, http.MethodPost, v.Body, hdr); rec.Code != http.StatusUnauthorized {
		t.Fatalf("event before verification: %d %s", rec.Code, rec.Body)
	}
	if rec := sourcestest.ServeHook(t, g, pub, http.MethodPost, f.VerificationBody, nil); rec.Code != http.StatusOK {
		t.Fatalf("verification POST: %d %s", rec.Code, rec.Body)
	}
	rec := sourcestest.ServeHook(t, g, pub, http.MethodPost, v.Body, hdr)
	if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"accepted":1`) {
		t.Fatalf("event: %d %s", rec.Code, rec.Body)
	}
	rec = sourcestest.ServeHook(t, g, pub, http.MethodPost, v.Body, hdr)
	if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"duplicates":1`) {
		t.Fatalf("redelivery: %d %s", rec.Code, rec.Body)
	}
	if len(pub.Events) != 1 || pub.Events[0].MsgID() != "gusto:03ffbf0c-48a9-4f1c-932a-546413a26ad1" {
		t.Fatalf("published %+v", pub.Events)
	}
}
