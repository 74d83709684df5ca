package gusto

import (
	"context"
	"fmt"
	"net/http"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
)

// APIVersion is sent as X-Gusto-API-Version; Gusto answers with the
// version pinned to the application when the header is absent.
const APIVersion = "2024-04-01"

// Resolver reads GET {base}/v1/employees/{employee_uuid} with
// "Authorization: Bearer <token>" (a company access token). Default base:
// https://api.gusto.com (https://api.gusto-demo.com for the demo environment).
// webhooks.md names the endpoint only through the brief; the fields (email,
// work_email, department, terminated, jobs[].title, terminations[]) follow Gusto's
// Employee object.
type Resolver struct {
	c     resolve.Client
	token string
}

var _ resolve.Resolver = (*Resolver)(nil)

// NewResolver returns the Gusto resolver.
func NewResolver(cfg resolve.Config) (*Resolver, error) {
	c, err := resolve.NewClient("gusto", cfg.BaseURL, "https://api.gusto.com", cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("resolve gusto: %w: API token is required", resolve.ErrNotConfigured)
	}
	return &Resolver{c: c, token: cfg.Token}, nil
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

// Resolve implements resolve.Resolver. Gusto's terminated flag turns true once a
// termination is in effect; a termination entered for a later date shows only in
// terminations[] (its date is returned as the termination_date attribute).
func (g *Resolver) Resolve(ctx context.Context, _, id string) (events.Person, error) {
	if err := resolve.CheckID(id); err != nil {
		return events.Person{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.c.URL(nil, "v1", "employees", id), nil)
	if err != nil {
		return events.Person{}, err
	}
	req.Header.Set("Authorization", "Bearer "+g.token)
	req.Header.Set("X-Gusto-API-Version", APIVersion)
	var e gustoEmployee
	if err := g.c.Do(req, &e); err != nil {
		return events.Person{}, err
	}
	p := events.Person{ID: id, Email: resolve.WorkEmail(e.WorkEmail), Name: resolve.JoinName(e.FirstName, e.LastName), Department: e.Department}
	if p.Email == "" {
		p.Email = resolve.WorkEmail(e.Email)
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
	p.Attributes = resolve.Attrs("termination_date", termDate)
	switch {
	case e.Terminated:
		p.Status = events.Terminated
	case e.Onboarded:
		p.Status = events.Active
	}
	return p, nil
}
