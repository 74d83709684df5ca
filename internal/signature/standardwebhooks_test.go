package signature_test

import (
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/signature"
)

type vectors struct {
	Valid []struct {
		Name, Secret, ID, Payload, Signature string
		Timestamp                            int64
	}
	InvalidSignatures []struct{ Name, Signature string } `json:"invalid_signatures"`
	MultiDecoys       string                             `json:"multi_signature_decoys"`
	SpecV1a           string                             `json:"spec_example_with_v1a"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	b, err := os.ReadFile("../../testdata/webhooks/standard-webhooks.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Valid) < 3 || len(v.InvalidSignatures) < 4 {
		t.Fatalf("vector file incomplete: %d valid, %d invalid", len(v.Valid), len(v.InvalidSignatures))
	}
	return v
}

func at(sec int64) func() time.Time { return func() time.Time { return time.Unix(sec, 0) } }

func mustVerifier(t *testing.T, secrets []string, now func() time.Time) *signature.StandardWebhooks {
	t.Helper()
	v, err := signature.NewStandardWebhooks(secrets, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestStandardWebhooksPublicVectors(t *testing.T) {
	vs := loadVectors(t)
	for _, tc := range vs.Valid {
		t.Run(tc.Name, func(t *testing.T) {
			key, err := signature.DecodeStandardSecret(tc.Secret)
			if err != nil {
				t.Fatal(err)
			}
			if got := signature.Sign(key, tc.ID, time.Unix(tc.Timestamp, 0), []byte(tc.Payload)); got != tc.Signature {
				t.Fatalf("Sign = %s, want %s", got, tc.Signature)
			}
			v := mustVerifier(t, []string{tc.Secret}, at(tc.Timestamp))
			if err := v.Verify(tc.ID, strconv.FormatInt(tc.Timestamp, 10), tc.Signature, []byte(tc.Payload)); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			// One flipped byte of the body must fail.
			if err := v.Verify(tc.ID, strconv.FormatInt(tc.Timestamp, 10), tc.Signature, []byte(tc.Payload+" ")); !errors.Is(err, signature.ErrNoMatchingSignature) {
				t.Fatalf("tampered body: err = %v", err)
			}
		})
	}
}

func TestStandardWebhooksRejects(t *testing.T) {
	vs := loadVectors(t)
	sw1 := vs.Valid[0]
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	key, _ := signature.DecodeStandardSecret(sw1.Secret)
	valid := signature.Sign(key, sw1.ID, now, []byte(sw1.Payload))
	v := mustVerifier(t, []string{sw1.Secret}, func() time.Time { return now })

	for _, tc := range vs.InvalidSignatures {
		t.Run(tc.Name, func(t *testing.T) {
			if err := v.Verify(sw1.ID, ts, tc.Signature, []byte(sw1.Payload)); !errors.Is(err, signature.ErrNoMatchingSignature) {
				t.Fatalf("err = %v, want ErrNoMatchingSignature", err)
			}
		})
	}
	t.Run("truncated header", func(t *testing.T) {
		if err := v.Verify(sw1.ID, ts, valid[:8], []byte(sw1.Payload)); !errors.Is(err, signature.ErrNoMatchingSignature) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("multi signature list accepted", func(t *testing.T) {
		h := strings.Replace(vs.MultiDecoys, "{VALID}", valid, 1)
		if err := v.Verify(sw1.ID, ts, h, []byte(sw1.Payload)); err != nil {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("v1a entries skipped", func(t *testing.T) {
		if err := v.Verify(sw1.ID, ts, vs.SpecV1a, []byte(sw1.Payload)); !errors.Is(err, signature.ErrNoMatchingSignature) {
			t.Fatalf("err = %v", err)
		}
		if err := v.Verify(sw1.ID, ts, vs.SpecV1a+" "+valid, []byte(sw1.Payload)); err != nil {
			t.Fatalf("valid after v1a: err = %v", err)
		}
	})
	for name, hdr := range map[string][3]string{
		"missing id":        {"", ts, valid},
		"missing timestamp": {sw1.ID, "", valid},
		"missing signature": {sw1.ID, ts, ""},
	} {
		t.Run(name, func(t *testing.T) {
			if err := v.Verify(hdr[0], hdr[1], hdr[2], []byte(sw1.Payload)); !errors.Is(err, signature.ErrMissingHeaders) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	for _, bad := range []string{"161426533.0", "invalid timestamp", "-161426533"} {
		t.Run("timestamp "+bad, func(t *testing.T) {
			if err := v.Verify(sw1.ID, bad, valid, []byte(sw1.Payload)); !errors.Is(err, signature.ErrInvalidTimestamp) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestStandardWebhooksTolerance(t *testing.T) {
	vs := loadVectors(t)
	sw1 := vs.Valid[0]
	key, _ := signature.DecodeStandardSecret(sw1.Secret)
	now := time.Unix(1_800_000_000, 0)
	v := mustVerifier(t, []string{sw1.Secret}, func() time.Time { return now })
	cases := []struct {
		name string
		ts   time.Time
		want error
	}{
		{"now", now, nil},
		{"exactly 5 min old", now.Add(-5 * time.Minute), nil},
		{"5 min 1 s old", now.Add(-5*time.Minute - time.Second), signature.ErrMessageTooOld},
		{"exactly 5 min ahead", now.Add(5 * time.Minute), nil},
		{"5 min 1 s ahead", now.Add(5*time.Minute + time.Second), signature.ErrMessageTooNew},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sig := signature.Sign(key, sw1.ID, tc.ts, []byte(sw1.Payload))
			err := v.Verify(sw1.ID, strconv.FormatInt(tc.ts.Unix(), 10), sig, []byte(sw1.Payload))
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("signature for now replayed with an old timestamp", func(t *testing.T) {
		sig := signature.Sign(key, sw1.ID, now, []byte(sw1.Payload))
		if err := v.Verify(sw1.ID, strconv.FormatInt(now.Unix()-1, 10), sig, []byte(sw1.Payload)); !errors.Is(err, signature.ErrNoMatchingSignature) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestStandardWebhooksRotation(t *testing.T) {
	oldSecret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	newSecret := "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	body := []byte(`{"type":"leaver"}`)
	v := mustVerifier(t, []string{newSecret, oldSecret}, func() time.Time { return now })
	for _, s := range []string{oldSecret, newSecret} {
		key, _ := signature.DecodeStandardSecret(s)
		if err := v.Verify("msg_1", ts, signature.Sign(key, "msg_1", now, body), body); err != nil {
			t.Fatalf("secret %s…: %v", s[:10], err)
		}
	}
	other, _ := signature.DecodeStandardSecret("whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=")
	if err := v.Verify("msg_1", ts, signature.Sign(other, "msg_1", now, body), body); !errors.Is(err, signature.ErrNoMatchingSignature) {
		t.Fatalf("unknown secret accepted: %v", err)
	}
}

func TestNewStandardWebhooksEmptySecret(t *testing.T) {
	for _, s := range [][]string{nil, {""}, {"whsec_"}, {"  "}} {
		if _, err := signature.NewStandardWebhooks(s, 0, nil); !errors.Is(err, signature.ErrEmptySecret) {
			t.Fatalf("secrets %q: err = %v, want ErrEmptySecret", s, err)
		}
	}
	if _, err := signature.NewStandardWebhooks([]string{"whsec_!!!not base64"}, 0, nil); err == nil {
		t.Fatal("non-base64 secret accepted")
	}
}

// FuzzStandardWebhooksVerify feeds arbitrary headers and bodies: Verify must never
// panic, and must accept only when the oracle (Sign with the same key) agrees.
func FuzzStandardWebhooksVerify(f *testing.F) {
	vs := []string{"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "v1,", "v1a,abc v1,xyz", "", "v1,dawfeoifkpqwoekfpqoekf"}
	for _, s := range vs {
		f.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", s, []byte(`{"test": 2432232314}`))
	}
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := signature.DecodeStandardSecret(secret)
	v, err := signature.NewStandardWebhooks([]string{secret}, 0, at(1614265330))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		err := v.Verify(id, ts, sig, body)
		if err != nil {
			return
		}
		sec, perr := strconv.ParseInt(ts, 10, 64)
		if perr != nil {
			t.Fatalf("accepted unparsable timestamp %q", ts)
		}
		want := signature.Sign(key, id, time.Unix(sec, 0), body)
		if !strings.Contains(" "+sig+" ", " "+want+" ") && !strings.Contains(sig, want[3:]) {
			t.Fatalf("accepted %q which does not contain the valid signature %q", sig, want)
		}
	})
}

// TestStandardWebhooksConcurrentVerify: the keyed HMAC states a verifier
// reuses never leak one check into another — many goroutines verifying
// bodies signed with either active secret, or with a third one, or with a
// body one byte off, each get their own answer.
func TestStandardWebhooksConcurrentVerify(t *testing.T) {
	secrets := []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"}
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	v := mustVerifier(t, secrets, func() time.Time { return now })
	keys := make([][]byte, 0, 3)
	for _, s := range append(secrets, "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=") {
		k, _ := signature.DecodeStandardSecret(s)
		keys = append(keys, k)
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 500 {
				id := "msg_" + strconv.Itoa(g) + "_" + strconv.Itoa(i)
				body := []byte(`{"type":"leaver","person":{"id":"` + id + `"}}`)
				k := i % 3
				sig := signature.Sign(keys[k], id, now, body)
				err := v.Verify(id, ts, sig, body)
				if (k < 2) != (err == nil) {
					errs <- errors.New(id + ": key " + strconv.Itoa(k) + " answered " + errString(err))
					return
				}
				if k < 2 {
					body[len(body)-3] ^= 1
					if err := v.Verify(id, ts, sig, body); !errors.Is(err, signature.ErrNoMatchingSignature) {
						errs <- errors.New(id + ": a changed body answered " + errString(err))
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// BenchmarkStandardWebhooksVerify is one check of a 600-byte body with one
// active secret (the receiver's per-event signature cost).
func BenchmarkStandardWebhooksVerify(b *testing.B) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := signature.DecodeStandardSecret(secret)
	v, err := signature.NewStandardWebhooks([]string{secret}, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(strings.Repeat("x", 600))
	now := time.Now()
	sig, ts := signature.Sign(key, "msg_1", now, body), strconv.FormatInt(now.Unix(), 10)
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify("msg_1", ts, sig, body); err != nil {
			b.Fatal(err)
		}
	}
}
