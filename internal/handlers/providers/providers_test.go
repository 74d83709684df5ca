package providers_test

import (
	"slices"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/handlers/providers"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Each webhook entry builds the source that answers to the entry's name (the
// route and the events' Source), so a swapped constructor cannot hide.
func TestWebhooksAnswerToTheirName(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range providers.All() {
		if seen[p.Name] {
			t.Errorf("%s is registered twice", p.Name)
		}
		seen[p.Name] = true
		if p.Webhook == nil {
			if !p.AppBuilt {
				t.Errorf("%s has no webhook and is not built by the app", p.Name)
			}
			continue
		}
		cfg := sources.Config{Secrets: []string{"whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0"}}
		if p.Name == "bamboohr" {
			cfg.APIURL, cfg.APIToken = "https://api.bamboohr.com/api/gateway.php/acme", "t"
		}
		s, err := p.Webhook(cfg)
		if err != nil {
			t.Errorf("%s: %v", p.Name, err)
			continue
		}
		if s.Name() != p.Name {
			t.Errorf("registry entry %s builds source %s", p.Name, s.Name())
		}
	}
	if want := []string{"generic", "okta", "bamboohr", "hibob", "gusto", "personio", "deel", "rippling", "scim"}; !slices.Equal(providers.Names(), want) {
		t.Errorf("Names() = %v, want %v (JML_SOURCE_<NAME>_* in DESIGN)", providers.Names(), want)
	}
}

// The registry's classes agree with the directory's precedence table
// (state.Authoritative), which cannot import this package.
func TestClassesMatchTheDirectory(t *testing.T) {
	for _, p := range providers.All() {
		all, email, groups := state.Authoritative(p.Name, "title"), state.Authoritative(p.Name, "email"), state.Authoritative(p.Name, "groups")
		var got providers.Class
		switch {
		case all && email && groups:
			got = providers.EveryField
		case email && !groups:
			got = providers.HR
		case groups && !email:
			got = providers.IdP
		default:
			t.Fatalf("%s: state.Authoritative gives no known class", p.Name)
		}
		if got != p.Class {
			t.Errorf("%s: registry class %d, state.Authoritative says %d", p.Name, p.Class, got)
		}
	}
}

// API readers exist exactly where a simulator (the fakes table) stands for
// them, and the worker's resolvers skip a provider whose API feeds something
// else (Okta's System Log catch-up): with JML_SOURCE_OKTA_API_URL set the
// worker used to fail to start ("no resolver for source okta").
func TestAPIs(t *testing.T) {
	hasFake := map[string]bool{}
	for _, f := range fakes {
		if _, ok := providers.Lookup(f.name); !ok {
			t.Errorf("simulator %s has no registry entry", f.name)
		}
		hasFake[f.name] = true
	}
	for _, p := range providers.All() {
		if (p.API != nil) != hasFake[p.Name] {
			t.Errorf("%s: API reader %v but simulator %v", p.Name, p.API != nil, hasFake[p.Name])
		}
	}
	apis := providers.APIs(map[string]providers.Settings{
		"okta":     {Secrets: []string{"s"}, APIURL: "https://acme.okta.com", APIToken: "t"},
		"personio": {APIURL: "https://api.personio.de", APIToken: "id:secret"},
		"hibob":    {},
	})
	if len(apis) != 1 || apis["personio"] != (resolve.Config{BaseURL: "https://api.personio.de", Token: "id:secret"}) {
		t.Errorf("APIs = %+v, want personio's alone", apis)
	}
	for name := range apis {
		if _, err := providers.NewResolver(name, apis[name]); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
