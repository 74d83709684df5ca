package resolve

import (
	"context"
	"fmt"
	"net/http"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// GustoAPIVersion is sent as X-Gusto-API-Version; Gusto answers with the
// version pinned to the application when the header is absent.
const GustoAPIVersion = "2024-04-01"

// Gusto reads GET {base}/v1/employees/{employee_uuid} with
// "Authorization: Bearer <token>" (a company access token). Default base:
// https://api.gusto.com (https://api.gusto-demo.com for the demo environment).
// webhooks.md names the endpoint only through the brief; the fields (email,
// work_email, department, terminated, jobs[].title, terminations[]) follow Gusto's
// Employee object.
type Gusto struct {
	c     client
	token string
}

var _ Resolver = (*Gusto)(nil)

// NewGusto returns the Gusto resolver.
func NewGusto(cfg Config) (*Gusto, error) {
	c, err := newClient("gusto", cfg.BaseURL, "https://api.gusto.com", cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("resolve gusto: %w: API token is required", ErrNotConfigured)
	}
	return &Gusto{c: c, token: cfg.Token}, nil
}

type gustoEmployee struct {
	UUID       string `json:"uuid"`
	FirstName  string `json:"first_name"`
	LastName   string `json:"last_name"`
	Email      string `json:"email"`
	WorkEmail  string `json:"work_email"`
	Department string `json:"department"`
	Terminated bool   `json:"terminated"`
	Onboarded  bool   `json:"onboarded"`
	Jobs       []struct {
		Title   string `json:"title"`
		Primary bool   `json:"primary"`
	} `json:"jobs"`
	Terminations []struct {
		EffectiveDate string `json:"effective_date"`
		Active        bool   `json:"active"`
	} `json:"terminations"`
}

// Resolve implements Resolver. Gusto's terminated flag turns true once a
// termination is in effect; a termination entered for a later date shows only in
// terminations[] (its date is returned as the termination_date attribute).
func (g *Gusto) Resolve(ctx context.Context, _, id string) (events.Person, error) {
	if err := checkID(id); err != nil {
		return events.Person{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.c.url(nil, "v1", "employees", id), nil)
	if err != nil {
		return events.Person{}, err
	}
	req.Header.Set("Authorization", "Bearer "+g.token)
	req.Header.Set("X-Gusto-API-Version", GustoAPIVersion)
	var e gustoEmployee
	if err := g.c.do(req, &e); err != nil {
		return events.Person{}, err
	}
	p := events.Person{ID: id, Email: workEmail(e.WorkEmail), Name: joinName(e.FirstName, e.LastName), Department: e.Department}
	if p.Email == "" {
		p.Email = workEmail(e.Email)
	}
	for _, j := range e.Jobs {
		if j.Primary || p.Title == "" {
			p.Title = j.Title
		}
	}
	var termDate string
	for _, t := range e.Terminations {
		if t.Active {
			termDate = t.EffectiveDate
		}
	}
	p.Attributes = attrs("termination_date", termDate)
	switch {
	case e.Terminated:
		p.Status = events.Terminated
	case e.Onboarded:
		p.Status = events.Active
	}
	return p, nil
}
