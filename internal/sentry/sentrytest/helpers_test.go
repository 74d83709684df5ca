package sentrytest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

func (r resp) obj(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	r.json(t, &m)
	return m
}

func (r resp) list(t *testing.T) []map[string]any {
	t.Helper()
	var l []map[string]any
	r.json(t, &l)
	return l
}

type client struct {
	t     testing.TB
	base  string
	token string
	actAs string
	http  *http.Client
}

func newClient(t testing.TB, srv *Server) *client {
	return &client{t: t, base: srv.URL, token: "sandbox", http: &http.Client{Timeout: 10 * time.Second}}
}

func (c *client) as(email string) *client {
	cc := *c
	cc.actAs = email
	return &cc
}

func (c *client) withToken(tok string) *client {
	cc := *c
	cc.token = tok
	return &cc
}

func (c *client) do(method, path string, body any) resp {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	u := path
	if !strings.HasPrefix(u, "http") {
		u = c.base + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.actAs != "" {
		req.Header.Set("X-Sandbox-Act-As", c.actAs)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func (c *client) get(path string) resp { return c.do("GET", path, nil) }

func expect(t *testing.T, r resp, status int, bodySub string) {
	t.Helper()
	if r.status != status {
		b := string(r.body)
		if len(b) > 400 {
			b = b[:400] + "…"
		}
		t.Fatalf("status = %d, want %d; body %s", r.status, status, b)
	}
	if bodySub != "" && !strings.Contains(string(r.body), bodySub) {
		t.Fatalf("body %s does not contain %s", r.body, bodySub)
	}
}

// memberID returns the member id of email in s.
func memberID(t *testing.T, s *Sandbox, email string) string {
	t.Helper()
	v, ok := s.Member(email)
	if !ok {
		t.Fatalf("no member %s", email)
	}
	return v.ID
}

// fixedClock is a clock frozen in the middle of a second, advanced by the test.
type fixedClock struct{ ns atomic.Int64 }

func (f *fixedClock) Now() time.Time { return time.Unix(0, f.ns.Load()).UTC() }

func (f *fixedClock) Add(d time.Duration) { f.ns.Add(int64(d)) }

func newClock() *fixedClock {
	c := &fixedClock{}
	c.ns.Store(time.Date(2026, 3, 2, 10, 0, 0, 500_000_000, time.UTC).UnixNano())
	return c
}
