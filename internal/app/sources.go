package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/gusto"
	"github.com/sentry-jml/sentry-jml/internal/handlers/scimserver"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// SourcesOptions are what the sources share beyond their specs.
type SourcesOptions struct {
	// PublicURL is the receiver's external URL: SCIM links are built from it.
	PublicURL     string
	MeterProvider metric.MeterProvider
}

// Sources builds the enabled sources (those with a secret; Gusto also without,
// to accept its verification handshake) and the extra handlers (the inbound
// SCIM provider). specs is keyed by source name.
func Sources(ctx context.Context, js jetstream.JetStream, specs map[string]providers.Settings, pub *events.Publisher, jo jsstate.Options, log *slog.Logger, so SourcesOptions) ([]sources.Source, map[string]http.Handler, error) {
	var out []sources.Source
	extra := map[string]http.Handler{}
	cfg := func(name string) sources.Config {
		sp := specs[name]
		return sources.Config{Secrets: sp.Secrets, APIURL: sp.APIURL, APIToken: sp.APIToken, Logger: log.With("source", name)}
	}
	add := func(name string, s sources.Source, err error) error {
		if err != nil {
			return fmt.Errorf("JML_SOURCE_%s: %w", upper(name), err)
		}
		out = append(out, s)
		return nil
	}
	// Sources enabled by a secret alone, in registry order.
	for _, p := range providers.All() {
		if p.Webhook == nil || len(specs[p.Name].Secrets) == 0 {
			continue
		}
		s, err := p.Webhook(cfg(p.Name))
		if err := add(p.Name, s, err); err != nil {
			return nil, nil, err
		}
	}
	// Gusto hands its signing key over in a verification POST: the route is a
	// 404 until an operator arms it (`jml sources arm gusto`) for that one
	// handshake or configures the key, and the key is kept in JetStream for
	// every replica (`jml sources show gusto` shows it once).
	keys, err := jsstate.OpenSourceKeys(ctx, js, jo, "gusto")
	if err != nil {
		return nil, nil, err
	}
	g, err := gusto.NewSource(cfg("gusto"), keys)
	if err := add("gusto", g, err); err != nil {
		return nil, nil, err
	}
	if sp := specs["scim"]; len(sp.Secrets) > 0 {
		store, err := jsstate.OpenSCIM(ctx, js, jo)
		if err != nil {
			return nil, nil, err
		}
		inactive := events.Suspend
		if sp.Inactive == "leaver" {
			inactive = events.Leaver
		}
		base := ""
		if so.PublicURL != "" {
			base = so.PublicURL + scimserver.Prefix
		}
		srv, err := scimserver.New(scimserver.Options{Store: store, Publisher: pub, Secrets: sp.Secrets, InactiveType: inactive,
			BaseURL: base, MeterProvider: so.MeterProvider, Logger: log.With("source", "scim")})
		if err != nil {
			return nil, nil, fmt.Errorf("JML_SOURCE_SCIM: %w", err)
		}
		extra["/scim/v2/"] = srv
	}
	return out, extra, nil
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}
