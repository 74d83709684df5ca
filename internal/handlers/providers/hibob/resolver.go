package hibob

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
)

// hibobFields are the field ids requested from Bob (dot notation).
var hibobFields = []string{"root.id", "root.email", "root.displayName", "root.firstName", "root.surname",
	"work.department", "work.title", "work.reportsTo", "internal.lifecycleStatus", "internal.status"}

// Resolver reads one employee with POST {base}/v1/people/{identifier} and the body
// {"fields": [...], "humanReadable": "REPLACE"}: the current "read employee fields
// by employee ID" endpoint. The brief and older guides name GET
// /v1/people/{identifier}, which Bob deprecated in favour of this POST (the body
// selects fields; fields the service user may not read are silently omitted).
// Auth: HTTP Basic with the service user's ID and token, so
// JML_SOURCE_HIBOB_API_TOKEN is "<service user id>:<token>". Default base:
// https://api.hibob.com. webhooks.md is silent on the API; this follows
// apidocs.hibob.com ("Read company employee fields by employee ID", "People read
// API contract").
type Resolver struct {
	c          resolve.Client
	user, pass string
}

var _ resolve.Resolver = (*Resolver)(nil)

// NewResolver returns the HiBob resolver.
func NewResolver(cfg resolve.Config) (*Resolver, error) {
	c, err := resolve.NewClient("hibob", cfg.BaseURL, "https://api.hibob.com", cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	user, pass, ok := strings.Cut(cfg.Token, ":")
	if !ok || user == "" || pass == "" {
		return nil, fmt.Errorf("resolve hibob: %w: API token must be <service user id>:<token>", resolve.ErrNotConfigured)
	}
	return &Resolver{c: c, user: user, pass: pass}, nil
}

type hibobPerson struct {
	ID          json.Number `json:"id"`
	Email       string      `json:"email"`
	DisplayName string      `json:"displayName"`
	FirstName   string      `json:"firstName"`
	Surname     string      `json:"surname"`
	Work        struct {
		Department string          `json:"department"`
		Title      string          `json:"title"`
		ReportsTo  json.RawMessage `json:"reportsTo"`
	} `json:"work"`
	Internal struct {
		LifecycleStatus string `json:"lifecycleStatus"`
		Status          string `json:"status"`
	} `json:"internal"`
}

// Resolve implements resolve.Resolver.
func (h *Resolver) Resolve(ctx context.Context, _, id string) (events.Person, error) {
	if err := resolve.CheckID(id); err != nil {
		return events.Person{}, err
	}
	body, _ := json.Marshal(map[string]any{"fields": hibobFields, "humanReadable": "REPLACE"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.c.URL(nil, "v1", "people", id), bytes.NewReader(body))
	if err != nil {
		return events.Person{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(h.user, h.pass)
	var e hibobPerson
	if err := h.c.Do(req, &e); err != nil {
		return events.Person{}, err
	}
	p := events.Person{
		ID:         id,
		Email:      resolve.WorkEmail(e.Email),
		Name:       e.DisplayName,
		Department: e.Work.Department,
		Title:      e.Work.Title,
		Attributes: resolve.Attrs("hibob.lifecycle_status", e.Internal.LifecycleStatus, "hibob.status", e.Internal.Status),
	}
	if p.Name == "" {
		p.Name = resolve.JoinName(e.FirstName, e.Surname)
	}
	var mgr struct {
		Email string `json:"email"`
	}
	if json.Unmarshal(e.Work.ReportsTo, &mgr) == nil {
		p.ManagerEmail = resolve.WorkEmail(mgr.Email)
	}
	switch lc := strings.ToLower(e.Internal.LifecycleStatus); {
	case lc == "terminated":
		p.Status = events.Terminated
	case strings.Contains(lc, "leave"):
		p.Status = events.Suspended
	case lc == "employed":
		p.Status = events.Active
	case lc == "" && strings.EqualFold(e.Internal.Status, "inactive"):
		p.Status = events.Suspended
	case lc == "" && strings.EqualFold(e.Internal.Status, "active"):
		p.Status = events.Active
	}
	// "hired" (start date ahead) and unknown values leave Status empty.
	return p, nil
}
