package resolve

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// bambooFields are the field aliases requested from BambooHR.
const bambooFields = "firstName,lastName,displayName,workEmail,status,employmentHistoryStatus,department,division,jobTitle,terminationDate"

// BambooHR reads GET {base}/v1/employees/{id}?fields=… where base is
// https://api.bamboohr.com/api/gateway.php/{companyDomain} (the company is part
// of the URL, so JML_SOURCE_BAMBOOHR_API_URL is required). Auth is HTTP Basic
// with the API key as the user name and any password ("x"). BambooHR answers XML
// unless asked for JSON. Employee status: status "Active"/"Inactive";
// employmentHistoryStatus carries "Terminated" and leave values. webhooks.md does
// not describe the API (only the webhooks): endpoint, auth and field aliases
// follow BambooHR's public API documentation and integrations that use it.
type BambooHR struct {
	c   client
	key string
}

var _ Resolver = (*BambooHR)(nil)

// NewBambooHR returns the BambooHR resolver; cfg.Token is the API key.
func NewBambooHR(cfg Config) (*BambooHR, error) {
	c, err := newClient("bamboohr", cfg.BaseURL, "", cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("resolve bamboohr: %w: API key is required", ErrNotConfigured)
	}
	return &BambooHR{c: c, key: cfg.Token}, nil
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

// Resolve implements Resolver.
func (b *BambooHR) Resolve(ctx context.Context, _, id string) (events.Person, error) {
	if err := checkID(id); err != nil {
		return events.Person{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.c.url(url.Values{"fields": {bambooFields}}, "v1", "employees", id), nil)
	if err != nil {
		return events.Person{}, err
	}
	req.SetBasicAuth(b.key, "x")
	var e bambooEmployee
	if err := b.c.do(req, &e); err != nil {
		return events.Person{}, err
	}
	p := events.Person{
		ID:         id,
		Email:      workEmail(e.WorkEmail),
		Name:       e.DisplayName,
		Department: e.Department,
		Title:      e.JobTitle,
		Attributes: attrs("bamboohr.status", e.Status, "bamboohr.employment_status", e.EmploymentHistoryStatus,
			"division", e.Division, "termination_date", cleanDate(e.TerminationDate)),
	}
	if p.Name == "" {
		p.Name = joinName(e.FirstName, e.LastName)
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
