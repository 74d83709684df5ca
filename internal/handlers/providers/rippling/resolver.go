package rippling

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
)

// Resolver reads GET {base}/platform/api/employees/{id} with
// "Authorization: Bearer <token>" (the partner/platform API whose employee ids
// the partner webhooks carry). Default base: https://api.rippling.com. The
// guaranteed fields are id, personalEmail and roleState (ACTIVE, TERMINATED,
// HIRED, ACCEPTED, INIT); workEmail, department and title depend on the token's
// scopes. webhooks.md documents no Rippling API at all: this follows Rippling's
// platform API reference as generated clients transcribe it. Rippling's newer
// REST API (https://rest.ripplingapis.com/workers/{id}) uses worker ids, which
// the partner webhooks do not carry.
type Resolver struct {
	c     resolve.Client
	token string
}

var _ resolve.Resolver = (*Resolver)(nil)

// NewResolver returns the Rippling resolver.
func NewResolver(cfg resolve.Config) (*Resolver, error) {
	c, err := resolve.NewClient("rippling", cfg.BaseURL, "https://api.rippling.com", cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("resolve rippling: %w: API token is required", resolve.ErrNotConfigured)
	}
	return &Resolver{c: c, token: cfg.Token}, nil
}

type ripplingEmployee struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	FirstName     string `json:"firstName"`
	LastName      string `json:"lastName"`
	WorkEmail     string `json:"workEmail"`
	PersonalEmail string `json:"personalEmail"`
	RoleState     string `json:"roleState"`
	Department    string `json:"department"`
	Title         string `json:"title"`
}

// Resolve implements resolve.Resolver. Only the work email is returned: the personal
// address never matches a Sentry member safely.
func (rp *Resolver) Resolve(ctx context.Context, _, id string) (events.Person, error) {
	if err := resolve.CheckID(id); err != nil {
		return events.Person{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rp.c.URL(nil, "platform", "api", "employees", id), nil)
	if err != nil {
		return events.Person{}, err
	}
	req.Header.Set("Authorization", "Bearer "+rp.token)
	var e ripplingEmployee
	if err := rp.c.Do(req, &e); err != nil {
		return events.Person{}, err
	}
	p := events.Person{ID: id, Email: resolve.WorkEmail(e.WorkEmail), Name: e.Name, Department: e.Department, Title: e.Title,
		Attributes: resolve.Attrs("rippling.role_state", e.RoleState)}
	if p.Name == "" {
		p.Name = resolve.JoinName(e.FirstName, e.LastName)
	}
	switch strings.ToUpper(e.RoleState) {
	case "ACTIVE":
		p.Status = events.Active
	case "TERMINATED":
		p.Status = events.Terminated
	}
	return p, nil
}
