package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/scimserver"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// SourceSpec enables one webhook source.
type SourceSpec struct {
	Secrets  []string
	APIURL   string
	APIToken string
	Inactive string // SCIM: "suspend" or "leaver"
}

// Sources builds the enabled sources (those with a secret; Gusto also without,
// to accept its verification handshake) and the extra handlers (the inbound
// SCIM provider). specs is keyed by source name.
func Sources(ctx context.Context, js jetstream.JetStream, specs map[string]SourceSpec, pub *events.Publisher, jo jsstate.Options, log *slog.Logger) ([]sources.Source, map[string]http.Handler, error) {
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
	for _, name := range []string{"generic", "okta", "bamboohr", "hibob", "personio", "deel", "rippling"} {
		if len(specs[name].Secrets) == 0 {
			continue
		}
		var err error
		switch name {
		case "generic":
			var g *sources.Generic
			g, err = sources.NewGeneric(specs[name].Secrets, nil)
			err = add(name, g, err)
		case "okta":
			s, e := sources.NewOkta(cfg(name))
			err = add(name, s, e)
		case "bamboohr":
			s, e := sources.NewBambooHR(cfg(name))
			err = add(name, s, e)
		case "hibob":
			s, e := sources.NewHiBob(cfg(name))
			err = add(name, s, e)
		case "personio":
			s, e := sources.NewPersonio(cfg(name))
			err = add(name, s, e)
		case "deel":
			s, e := sources.NewDeel(cfg(name))
			err = add(name, s, e)
		case "rippling":
			s, e := sources.NewRippling(cfg(name))
			err = add(name, s, e)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	// Gusto hands its signing key over in a verification POST: the route is
	// open for that handshake only, and the key is kept in JetStream for every
	// replica (`jml sources show gusto` shows it once).
	keys, err := jsstate.OpenSourceKeys(ctx, js, jo, "gusto")
	if err != nil {
		return nil, nil, err
	}
	g, err := sources.NewGusto(cfg("gusto"), keys)
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
		srv, err := scimserver.New(scimserver.Options{Store: store, Publisher: pub, Secrets: sp.Secrets, InactiveType: inactive, Logger: log.With("source", "scim")})
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
