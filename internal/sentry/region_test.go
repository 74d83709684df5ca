package sentry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeHosts serves each host name from its own loopback TLS server and
// returns a transport whose dialer maps the names to them (no network, no
// DNS), and the requests each host received.
func fakeHosts(t *testing.T, handlers map[string]http.HandlerFunc) (*http.Transport, map[string]*atomic.Int32) {
	t.Helper()
	hits := map[string]*atomic.Int32{}
	addrs := map[string]string{}
	var cert *x509.Certificate
	for host, h := range handlers {
		n := new(atomic.Int32)
		hits[host] = n
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			h(w, r)
		}))
		t.Cleanup(srv.Close)
		addrs[host+":443"] = srv.Listener.Addr().String()
		cert = srv.Certificate() // httptest's servers share one certificate
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			a, ok := addrs[addr]
			if !ok {
				return nil, errors.New("test: no such host " + addr)
			}
			return (&net.Dialer{}).DialContext(ctx, network, a)
		},
		// httptest's certificate names example.com; verify it against that.
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr, hits
}

// regionClient is a client of https://sentry.io whose fake hosts (sentry.io,
// us.sentry.io, evil.example) answer the organization details with regionURL.
func regionClient(t *testing.T, regionURL string) (*Client, map[string]*atomic.Int32) {
	t.Helper()
	handlers := map[string]http.HandlerFunc{}
	for _, host := range []string{"sentry.io", "us.sentry.io", "evil.example"} {
		h := host
		handlers[host] = func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer sntryu_tok" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			switch {
			case h == "sentry.io" && r.URL.Path == "/api/0/organizations/acme/":
				_, _ = w.Write([]byte(`{"slug":"acme","links":{"organizationUrl":"https://acme.sentry.io","regionUrl":"` + regionURL + `"}}`))
			case r.URL.Path == "/api/0/organizations/acme/members/me/":
				_, _ = w.Write([]byte(`{"id":"1","email":"bot@acme.test","orgRole":"manager","role":"manager","pending":false,"flags":{}}`))
			default:
				w.WriteHeader(http.StatusNotFound)
			}
		}
	}
	tr, hits := fakeHosts(t, handlers)
	c, err := New(Config{BaseURL: "https://sentry.io", Org: "acme", Token: "sntryu_tok", HTTPClient: &http.Client{Transport: tr}, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return c, hits
}

// The organization details' links.regionUrl
// (src/sentry/api/serializers/models/organization.py) sends the API to the
// org's region host once resolved; sentry.io sees only that lookup.
func TestClientFollowsRegionURL(t *testing.T) {
	c, hits := regionClient(t, "https://us.sentry.io")
	for i := 0; i < 3; i++ {
		if _, _, err := c.getMember(context.Background(), "me"); err != nil {
			t.Fatal(err)
		}
	}
	if hits["sentry.io"].Load() != 1 || hits["us.sentry.io"].Load() != 3 || hits["evil.example"].Load() != 0 {
		t.Fatalf("hits sentry.io=%d us=%d evil=%d", hits["sentry.io"].Load(), hits["us.sentry.io"].Load(), hits["evil.example"].Load())
	}
}

// A region URL not https on *.sentry.io is refused: nothing (and no token)
// goes there, and the call fails closed.
func TestClientRefusesForeignRegionURL(t *testing.T) {
	for _, bad := range []string{"https://evil.example", "http://us.sentry.io", "https://us.sentry.io.evil.example", ""} {
		c, hits := regionClient(t, bad)
		_, _, err := c.getMember(context.Background(), "me")
		if !errors.Is(err, ErrRegionRefused) {
			t.Fatalf("%q: err = %v", bad, err)
		}
		if hits["evil.example"].Load() != 0 || hits["us.sentry.io"].Load() != 0 {
			t.Fatalf("%q: a request left sentry.io", bad)
		}
	}
	if !strings.HasPrefix(ErrRegionRefused.Error(), "sentry:") {
		t.Fatal("error prefix")
	}
}

// A self-hosted or sandbox base is used as is (no lookup).
func TestClientNoRegionForOtherBases(t *testing.T) {
	for _, b := range []string{"https://de.sentry.io", "http://127.0.0.1:9000", "https://sentry.example.com"} {
		c, err := New(Config{BaseURL: b, Org: "acme", Token: "sntryu_tok"})
		if err != nil {
			t.Fatal(err)
		}
		if c.regional {
			t.Fatalf("%s follows regions", b)
		}
	}
}
