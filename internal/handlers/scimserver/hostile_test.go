package scimserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/scimserver"
)

func userBody(userName, email string) string {
	b, _ := json.Marshal(map[string]any{"schemas": []string{scimserver.SchemaUser}, "userName": userName, "active": true,
		"emails": []any{map[string]any{"value": email, "primary": true}}})
	return string(b)
}

// TestSCIMLimits: userName, externalId, emails and ids in paths are bounded
// like every other entry point; the largest allowed values pass, the first
// refused ones are a 400 in RFC 7644's error format, nothing over them is
// published, and the NATS connection survives.
func TestSCIMLimits(t *testing.T) {
	h := mustHarness(t)
	maxName := strings.Repeat("u", events.MaxIDLen)
	maxEmail := strings.Repeat("a", 64) + "@" + strings.Repeat("b", events.MaxEmailLen-69) + ".com"
	if rec := h.do(t, http.MethodPost, "/scim/v2/Users", userBody(maxName, maxEmail)); rec.Code != http.StatusCreated {
		t.Fatalf("largest allowed: %d %s", rec.Code, rec.Body)
	}
	n := h.rec.count()
	for name, body := range map[string]string{
		"userName":          userBody(maxName+"u", "x@acme.test"),
		"3 KB userName":     userBody(strings.Repeat("u", 3000), "x@acme.test"),
		"control character": userBody("jane\x00", "x@acme.test"),
		"email":             userBody("jane", strings.Repeat("a", 64)+"@"+strings.Repeat("b", events.MaxEmailLen-68)+".com"),
		"externalId":        `{"userName":"jane","externalId":"` + strings.Repeat("e", 257) + `"}`,
		"duplicate keys":    `{"userName":"jane","active":true,"active":false}`,
	} {
		rec := h.do(t, http.MethodPost, "/scim/v2/Users", body)
		var e struct {
			Schemas []string
			Status  string
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != http.StatusBadRequest || e.Status != "400" || len(e.Schemas) != 1 || e.Schemas[0] != scimserver.SchemaError {
			t.Fatalf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
	for _, path := range []string{"/scim/v2/Users/" + strings.Repeat("9", 3000), "/scim/v2/Groups/" + strings.Repeat("9", 257)} {
		if rec := h.do(t, http.MethodGet, path, ""); rec.Code != http.StatusBadRequest {
			t.Fatalf("GET %s…: %d %s", path[:20], rec.Code, rec.Body)
		}
	}
	if rec := h.do(t, http.MethodGet, `/scim/v2/Users?filter=userName+eq+%22`+strings.Repeat("u", 3000)+`%22`, ""); rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
		t.Fatalf("filter on a long userName: %d", rec.Code)
	}
	if h.rec.count() != n {
		t.Fatal("something over the limits was published")
	}
	if h.nc.Status() != nats.CONNECTED {
		t.Fatalf("NATS connection %v", h.nc.Status())
	}
}

// TestSCIMLinksNeverFromHost: without a configured external URL the links are
// root-relative; a client's Host header never becomes a link.
func TestSCIMLinksNeverFromHost(t *testing.T) {
	h := mustHarness(t, func(o *scimserver.Options) { o.BaseURL = "" })
	rec := h.do(t, http.MethodPost, "/scim/v2/Users", userBody("jane@acme.test", "jane@acme.test"), "Host", "evil.example", "X-Forwarded-Proto", "https")
	if rec.Code != http.StatusCreated {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if loc := rec.Header().Get("Location"); !strings.HasPrefix(loc, "/scim/v2/Users/") || strings.Contains(rec.Body.String(), "evil.example") {
		t.Fatalf("Location %q body %s", loc, rec.Body)
	}
	h2 := mustHarness(t, func(o *scimserver.Options) { o.BaseURL = "https://jml.example.com/scim/v2" })
	rec = h2.do(t, http.MethodPost, "/scim/v2/Users", userBody("bob@acme.test", "bob@acme.test"), "Host", "evil.example")
	if loc := rec.Header().Get("Location"); !strings.HasPrefix(loc, "https://jml.example.com/scim/v2/Users/") {
		t.Fatalf("Location %q", loc)
	}
}

// TestSCIMCountedLikeWebhooks: pushes appear in jml_events_received with the
// receiver's labels.
func TestSCIMCountedLikeWebhooks(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	h := mustHarness(t, func(o *scimserver.Options) { o.MeterProvider = mp })
	h.do(t, http.MethodPost, "/scim/v2/Users", userBody("jane@acme.test", "jane@acme.test"))
	h.do(t, http.MethodPost, "/scim/v2/Users", `{"userName":"x","userName":"y"}`)
	h.do(t, http.MethodGet, "/scim/v2/Users", "", "Authorization", "Bearer wrong")
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "jml_events_received" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				src, _ := dp.Attributes.Value("source")
				typ, _ := dp.Attributes.Value("type")
				out, _ := dp.Attributes.Value("outcome")
				got[src.AsString()+"/"+typ.AsString()+"/"+out.AsString()] += dp.Value
			}
		}
	}
	for _, k := range []string{"scim/joiner/accepted", "scim//invalid", "scim//unauthorized"} {
		if got[k] != 1 {
			t.Fatalf("%s = %d (all: %v)", k, got[k], got)
		}
	}
}
