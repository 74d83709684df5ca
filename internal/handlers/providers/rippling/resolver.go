package resolve

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// Rippling reads GET {base}/platform/api/employees/{id} with
// "Authorization: Bearer <token>" (the partner/platform API whose employee ids
// the partner webhooks carry). Default base: https://api.rippling.com. The
// guaranteed fields are id, personalEmail and roleState (ACTIVE, TERMINATED,
// HIRED, ACCEPTED, INIT); workEmail, department and title depend on the token's
// scopes. webhooks.md documents no Rippling API at all: this follows Rippling's
// platform API reference as generated clients transcribe it. Rippling's newer
// REST API (https://rest.ripplingapis.com/workers/{id}) uses worker ids, which
// the partner webhooks do not carry.
type Rippling struct {
	c     client
	token string
}

var _ Resolver = (*Rippling)(nil)

// NewRippling returns the Rippling resolver.
func NewRippling(cfg Config) (*Rippling, error) {
	c, err := newClient("rippling", cfg.BaseURL, "https://api.rippling.com", cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("resolve rippling: %w: API token is required", ErrNotConfigured)
	}
	return &Rippling{c: c, token: cfg.Token}, nil
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

// Resolve implements Resolver. Only the work email is returned: the personal
// address never matches a Sentry member safely.
func (rp *Rippling) Resolve(ctx context.Context, _, id string) (events.Person, error) {
	if err := checkID(id); err != nil {
		return events.Person{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rp.c.url(nil, "platform", "api", "employees", id), nil)
	if err != nil {
		return events.Person{}, err
	}
	req.Header.Set("Authorization", "Bearer "+rp.token)
	var e ripplingEmployee
	if err := rp.c.do(req, &e); err != nil {
		return events.Person{}, err
	}
	p := events.Person{ID: id, Email: workEmail(e.WorkEmail), Name: e.Name, Department: e.Department, Title: e.Title,
		Attributes: attrs("rippling.role_state", e.RoleState)}
	if p.Name == "" {
		p.Name = joinName(e.FirstName, e.LastName)
	}
	switch strings.ToUpper(e.RoleState) {
	case "ACTIVE":
		p.Status = events.Active
	case "TERMINATED":
		p.Status = events.Terminated
	}
	return p, nil
}
