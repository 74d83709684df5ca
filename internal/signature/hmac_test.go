package signature_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"os"
	"strings"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/signature"
)

type providerVectors struct {
	Source  string `json:"source"`
	Vectors []struct {
		Name            string `json:"name"`
		ComputedLocally bool   `json:"computed_locally"`
		Key             string `json:"key"`
		Timestamp       string `json:"timestamp"`
		Body            string `json:"body"`
		Signature       string `json:"signature"`
	} `json:"vectors"`
}

func loadProvider(tb testing.TB, name string) providerVectors {
	tb.Helper()
	b, err := os.ReadFile("../../testdata/webhooks/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	var v providerVectors
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatal(err)
	}
	if len(v.Vectors) == 0 {
		tb.Fatalf("%s: no vectors", name)
	}
	return v
}

// TestProviderVectors checks the §3 vectors (computed locally, not published)
// with the scheme each provider documents.
func TestProviderVectors(t *testing.T) {
	cases := []struct {
		file  string
		mk    func([]string) (*signature.HMAC, error)
		parts func(ts, body string) [][]byte
	}{
		{"bamboohr.json", func(s []string) (*signature.HMAC, error) { return signature.NewHMAC(sha256.New, signature.Hex, s) },
			func(ts, body string) [][]byte { return [][]byte{[]byte(body), []byte(ts)} }},
		{"hibob.json", func(s []string) (*signature.HMAC, error) { return signature.NewHMAC(sha512.New, signature.Base64, s) },
			func(_, body string) [][]byte { return [][]byte{[]byte(body)} }},
		{"deel.json", func(s []string) (*signature.HMAC, error) { return signature.NewHMAC(sha256.New, signature.Hex, s) },
			func(_, body string) [][]byte { return [][]byte{[]byte("POST"), []byte(body)} }},
		{"gusto.json", func(s []string) (*signature.HMAC, error) { return signature.NewHMAC(sha256.New, signature.Hex, s) },
			func(_, body string) [][]byte { return [][]byte{[]byte(body)} }},
	}
	for _, tc := range cases {
		for _, v := range loadProvider(t, tc.file).Vectors {
			t.Run(tc.file+"/"+v.Name, func(t *testing.T) {
				if !v.ComputedLocally {
					t.Fatal("provider vectors must be marked computed_locally")
				}
				h, err := tc.mk([]string{"rotated-out", v.Key})
				if err != nil {
					t.Fatal(err)
				}
				parts := tc.parts(v.Timestamp, v.Body)
				if got := h.Sign([]byte(v.Key), parts...); got != v.Signature {
					t.Fatalf("Sign = %s, want %s", got, v.Signature)
				}
				if err := h.Verify(v.Signature, parts...); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				tampered := tc.parts(v.Timestamp, v.Body+" ")
				if err := h.Verify(v.Signature, tampered...); !errors.Is(err, signature.ErrNoMatchingSignature) {
					t.Fatalf("tampered: %v", err)
				}
				only, _ := tc.mk([]string{"rotated-out"})
				if err := only.Verify(v.Signature, parts...); !errors.Is(err, signature.ErrNoMatchingSignature) {
					t.Fatalf("other key: %v", err)
				}
			})
		}
	}
}

func TestHMACRejects(t *testing.T) {
	h, _ := signature.NewHMAC(sha256.New, signature.Hex, []string{"k"})
	good := h.Sign([]byte("k"), []byte("body"))
	for _, tc := range []struct {
		name, sig string
		want      error
	}{
		{"OK", good, nil},
		{"OK upper case", strings.ToUpper(good), nil},
		{"OK surrounding space", " " + good + " ", nil},
		{"ErrMissingSignature", "", signature.ErrMissingSignature},
		{"ErrMalformed not hex", "xyz", signature.ErrMalformed},
		{"ErrMalformed short", good[:62], signature.ErrMalformed},
		{"ErrMalformed prefixed", "sha256=" + good, signature.ErrMalformed},
		{"ErrNoMatchingSignature", strings.Repeat("0", 64), signature.ErrNoMatchingSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := h.Verify(tc.sig, []byte("body")); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	for _, secrets := range [][]string{nil, {""}, {"a", "  "}} {
		if _, err := signature.NewHMAC(sha256.New, signature.Hex, secrets); !errors.Is(err, signature.ErrEmptySecret) {
			t.Fatalf("secrets %q: err = %v", secrets, err)
		}
	}
}

func TestStaticToken(t *testing.T) {
	st, err := signature.NewStaticToken([]string{"tok-1", "Bearer tok-2", "Basic dXNlcjpwYXNz"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		header string
		want   error
	}{
		{"tok-1", nil},
		{"Bearer tok-1", nil},
		{"Bearer tok-2", nil},
		{"Basic dXNlcjpwYXNz", nil},
		{"tok-2", signature.ErrTokenMismatch},
		{"Bearer Bearer tok-1", signature.ErrTokenMismatch},
		{"tok-", signature.ErrTokenMismatch},
		{"tok-10", signature.ErrTokenMismatch},
		{"", signature.ErrMissingToken},
	} {
		if err := st.Verify(tc.header); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Fatalf("%q: err = %v, want %v", tc.header, err, tc.want)
		}
	}
	if !signature.Equal("a", "a") || signature.Equal("a", "ab") || signature.Equal("", "a") {
		t.Fatal("Equal")
	}
}

func FuzzHMACVerify(f *testing.F) {
	for _, name := range []string{"bamboohr.json", "deel.json", "gusto.json"} {
		for _, v := range loadProvider(f, name).Vectors {
			f.Add([]byte(v.Body), v.Signature, false)
		}
	}
	for _, v := range loadProvider(f, "hibob.json").Vectors {
		f.Add([]byte(v.Body), v.Signature, true)
	}
	hexV, _ := signature.NewHMAC(sha256.New, signature.Hex, []string{"k1", "k2"})
	b64V, _ := signature.NewHMAC(sha512.New, signature.Base64, []string{"k1", "k2"})
	f.Fuzz(func(t *testing.T, body []byte, sig string, b64 bool) {
		v, h := hexV, sha256.New
		if b64 {
			v, h = b64V, sha512.New
		}
		err := v.Verify(sig, body)
		if err == nil {
			// Oracle: the header's bytes are the MAC of a configured key.
			got := decodeLenient(strings.TrimSpace(sig), b64)
			if !hmac.Equal(got, rawMAC(h, "k1", body)) && !hmac.Equal(got, rawMAC(h, "k2", body)) {
				t.Fatalf("verified a foreign signature %q", sig)
			}
		}
		if err := v.Verify(v.Sign([]byte("k2"), body), body); err != nil {
			t.Fatalf("own signature: %v", err)
		}
	})
}

func rawMAC(h func() hash.Hash, key string, body []byte) []byte {
	m := hmac.New(h, []byte(key))
	m.Write(body)
	return m.Sum(nil)
}

func decodeLenient(s string, b64 bool) []byte {
	if !b64 {
		b, _ := hex.DecodeString(s)
		return b
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, _ = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	return b
}

func FuzzStaticToken(f *testing.F) {
	f.Add("tok", "Bearer tok")
	f.Add("Basic x y", "Basic x y")
	f.Fuzz(func(t *testing.T, secret, header string) {
		st, err := signature.NewStaticToken([]string{secret})
		if err != nil {
			return
		}
		s, h := strings.TrimSpace(secret), strings.TrimSpace(header)
		if st.Verify(header) == nil && h != s && h != "Bearer "+s {
			t.Fatalf("secret %q accepted header %q", secret, header)
		}
	})
}
