package bamboohr

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
)

// bambooFields are the field aliases requested from BambooHR.
const bambooFields = "firstName,lastName,displayName,workEmail,status,employmentHistoryStatus,department,division,jobTitle,terminationDate"

// Resolver reads GET {base}/v1/employees/{id}?fields=… where base is
// https://api.bamboohr.com/api/gateway.php/{companyDomain} (the company is part
// of the URL, so JML_SOURCE_BAMBOOHR_API_URL is required). Auth is HTTP Basic
// with the API key as the user name and any password ("x"). BambooHR answers XML
// unless asked for JSON. Employee status: status "Active"/"Inactive";
// employmentHistoryStatus carries "Terminated" and leave values. webhooks.md does
// not describe the API (only the webhooks): endpoint, auth and field aliases
// follow BambooHR's public API documentation and integrations that use it.
type Resolver struct {
	c   resolve.Client
	key string
}

var _ resolve.Resolver = (*Resolver)(nil)

// NewResolver returns the BambooHR resolver; cfg.Token is the API key.
func NewResolver(cfg resolve.Config) (*Resolver, error) {
	c, err := resolve.NewClient("bamboohr", cfg.BaseURL, "", cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("resolve bamboohr: %w: API key is required", resolve.ErrNotConfigured)
	}
	return &Resolver{c: c, key: cfg.Token}, nil
}

type bambooEmployee struct {
	ID                      string `json:"id"`
	FirstName               string `json:"firstName"`
	LastName                string `json:"lastName"`
	DisplayName             string `json:"displayName"`
	WorkEmail               string `json:"workEmail"`
	Status                  string `json:"status"`
	EmploymentHistoryStatus string `json:"employmentHistoryStatus"`
	Department              string `json:"department"`
	Division                string `json:"division"`
	JobTitle                string `json:"jobTitle"`
	TerminationDate         string `json:"terminationDate"`
}

// Resolve implements resolve.Resolver.
func (b *Resolver) Resolve(ctx context.Context, _, id string) (events.Person, error) {
	if err := resolve.CheckID(id); err != nil {
		return events.Person{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.c.URL(url.Values{"fields": {bambooFields}}, "v1", "employees", id), nil)
	if err != nil {
		return events.Person{}, err
	}
	req.SetBasicAuth(b.key, "x")
	var e bambooEmployee
	if err := b.c.Do(req, &e); err != nil {
		return events.Person{}, err
	}
	p := events.Person{
		ID:         id,
		Email:      resolve.WorkEmail(e.WorkEmail),
		Name:       e.DisplayName,
		Department: e.Department,
		Title:      e.JobTitle,
		Attributes: resolve.Attrs("bamboohr.status", e.Status, "bamboohr.employment_status", e.EmploymentHistoryStatus,
			"division", e.Division, "termination_date", cleanDate(e.TerminationDate)),
	}
	if p.Name == "" {
		p.Name = resolve.JoinName(e.FirstName, e.LastName)
	}
	hist := strings.ToLower(e.EmploymentHistoryStatus)
	switch {
	case strings.EqualFold(e.Status, "inactive") || strings.Contains(hist, "terminated"):
		p.Status = events.Terminated
	case strings.Contains(hist, "leave"):
		p.Status = events.Suspended
	case strings.EqualFold(e.Status, "active"):
		p.Status = events.Active
	}
	return p, nil
}

// cleanDate drops BambooHR's "0000-00-00" for "no date".
func cleanDate(s string) string {
	if strings.HasPrefix(s, "0000") {
		return ""
	}
	return s
}
