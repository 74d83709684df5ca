package providers

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/bamboohr"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/deel"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/generic"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/gusto"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/hibob"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/okta"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/personio"
	"github.com/sentry-jml/sentry-jml/internal/handlers/providers/rippling"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
)

// Settings is one provider's configuration: JML_SOURCE_<NAME>_SECRET
// (several active secrets during rotation; none disables the webhook),
// _API_URL and _API_TOKEN (together or not at all) and, for SCIM only,
// _INACTIVE.
type Settings struct {
	Secrets  []string
	APIURL   string
	APIToken string
	// Inactive (SCIM only): what active=false means, "suspend" (default) or
	// "leaver".
	Inactive string
}

// Class is a provider's class for the directory's per-field precedence
// (state.Authoritative): which fields its events may set.
type Class int

const (
	// IdP: groups and status only (Okta, SCIM).
	IdP Class = iota
	// HR: every field except groups (the HR systems).
	HR
	// EveryField: every field (the generic source; the roster import shares it).
	EveryField
)

// Provider is one registry entry.
type Provider struct {
	Name  string
	Class Class
	// Webhook builds the webhook source from its settings; nil when the
	// receiver builds the provider itself because it keeps JetStream state
	// (Gusto's signing key, SCIM's users: AppBuilt).
	Webhook func(sources.Config) (sources.Source, error)
	// AppBuilt: internal/app builds this provider's endpoint (see Webhook).
	AppBuilt bool
	// API builds the reader of the provider's employee API (thin payloads,
	// unsigned webhooks); nil when the provider has none the worker reads
	// (Okta's API feeds the System Log catch-up instead). A provider with an
	// API reader has a simulator of that API, providers/<name>/<name>test,
	// which only tests import (it imports testing); the registry's tests list
	// them and check there is one exactly where API is set.
	API func(resolve.Config) (resolve.Resolver, error)
	// WithoutAPI returns what the provider cannot do when its API is not
	// configured ("" when nothing is lost); doctor prints it as a warning.
	WithoutAPI func(Settings) string
}

// All returns the registry, in the order the configuration lists providers.
func All() []Provider {
	return []Provider{
		{Name: "generic", Class: EveryField, Webhook: func(c sources.Config) (sources.Source, error) { return generic.NewSource(c.Secrets, nil) }},
		{Name: "okta", Class: IdP, Webhook: func(c sources.Config) (sources.Source, error) { return okta.NewSource(c) }},
		{Name: "bamboohr", Class: HR, Webhook: func(c sources.Config) (sources.Source, error) { return bamboohr.NewSource(c) },
			API:        func(c resolve.Config) (resolve.Resolver, error) { return bamboohr.NewResolver(c) },
			WithoutAPI: func(s Settings) string { return bamboohr.WithoutAPI(s.APIURL, s.APIToken) }},
		{Name: "hibob", Class: HR, Webhook: func(c sources.Config) (sources.Source, error) { return hibob.NewSource(c) },
			API: func(c resolve.Config) (resolve.Resolver, error) { return hibob.NewResolver(c) }},
		{Name: "gusto", Class: HR, AppBuilt: true,
			API: func(c resolve.Config) (resolve.Resolver, error) { return gusto.NewResolver(c) }},
		{Name: "personio", Class: HR, Webhook: func(c sources.Config) (sources.Source, error) { return personio.NewSource(c) },
			API: func(c resolve.Config) (resolve.Resolver, error) { return personio.NewResolver(c) }, WithoutAPI: unconfirmed("personio")},
		{Name: "deel", Class: HR, Webhook: func(c sources.Config) (sources.Source, error) { return deel.NewSource(c) },
			API: func(c resolve.Config) (resolve.Resolver, error) { return deel.NewResolver(c) }},
		{Name: "rippling", Class: HR, Webhook: func(c sources.Config) (sources.Source, error) { return rippling.NewSource(c) },
			API: func(c resolve.Config) (resolve.Resolver, error) { return rippling.NewResolver(c) }, WithoutAPI: unconfirmed("rippling")},
		{Name: "scim", Class: IdP, AppBuilt: true},
	}
}

// unconfirmed is the warning of an unsigned webhook whose terminations
// cannot be confirmed without the provider's API.
func unconfirmed(name string) func(Settings) string {
	return func(s Settings) string {
		if s.APIURL != "" || s.APIToken != "" {
			return ""
		}
		return fmt.Sprintf("terminations are applied unconfirmed (unsigned webhook, no API); set JML_SOURCE_%s_API_TOKEN", strings.ToUpper(name))
	}
}

// Names lists the providers' names, in registry order.
func Names() []string {
	all := All()
	out := make([]string, len(all))
	for i, p := range all {
		out[i] = p.Name
	}
	return out
}

// Lookup returns the named provider.
func Lookup(name string) (Provider, bool) {
	all := All()
	i := slices.IndexFunc(all, func(p Provider) bool { return p.Name == name })
	if i < 0 {
		return Provider{}, false
	}
	return all[i], true
}

// NewResolver builds the API reader of the named provider.
func NewResolver(name string, cfg resolve.Config) (resolve.Resolver, error) {
	p, ok := Lookup(name)
	if !ok || p.API == nil {
		return nil, fmt.Errorf("resolve: no resolver for source %q", name)
	}
	return p.API(cfg)
}

// APIs returns the API access of the providers that have an API reader and
// have it configured, keyed by name (the worker's resolvers).
func APIs(m map[string]Settings) map[string]resolve.Config {
	out := map[string]resolve.Config{}
	for _, p := range All() {
		if se := m[p.Name]; p.API != nil && se.APIURL != "" {
			out[p.Name] = resolve.Config{BaseURL: se.APIURL, Token: se.APIToken}
		}
	}
	return out
}
