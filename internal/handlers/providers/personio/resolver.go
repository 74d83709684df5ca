package personio

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
)

// Resolver reads the person with GET {base}/v2/persons/{id} and their
// employments with GET {base}/v2/persons/{id}/employments, with a bearer access
// token obtained by POST {base}/v2/auth/token (grant_type=client_credentials,
// client_id, client_secret; form-encoded) and cached until shortly before
// expires_in. JML_SOURCE_PERSONIO_API_TOKEN is "<client_id>:<client_secret>"
// (a value without ':' is used as a ready bearer token). Default base:
// https://api.personio.de. webhooks.md documents the webhooks API only; the
// persons and employments v2 endpoints and the auth flow follow
// developer.personio.de. Status comes from the latest employment (ACTIVE,
// ONBOARDING, LEAVE, INACTIVE), else from the person's status.
type Resolver struct {
	c            resolve.Client
	clientID     string
	clientSecret string

	mu      sync.Mutex
	bearer  string
	expires time.Time
	now     func() time.Time
}

var _ resolve.Resolver = (*Resolver)(nil)

// NewResolver returns the Personio resolver.
func NewResolver(cfg resolve.Config) (*Resolver, error) {
	c, err := resolve.NewClient("personio", cfg.BaseURL, "https://api.personio.de", cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("resolve personio: %w: API token is required", resolve.ErrNotConfigured)
	}
	p := &Resolver{c: c, now: time.Now}
	if id, secret, ok := strings.Cut(cfg.Token, ":"); ok {
		p.clientID, p.clientSecret = id, secret
	} else {
		p.bearer, p.expires = cfg.Token, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return p, nil
}

type personioToken struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

func (p *Resolver) token(ctx context.Context, renew bool) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clientID == "" || (!renew && p.bearer != "" && p.now().Before(p.expires)) {
		return p.bearer, nil
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {p.clientID}, "client_secret": {p.clientSecret}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.c.URL(nil, "v2", "auth", "token"), strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var t personioToken
	if err := p.c.Do(req, &t); err != nil {
		return "", fmt.Errorf("personio token: %w", err)
	}
	if t.AccessToken == "" {
		return "", fmt.Errorf("personio token: %w: no access_token in the answer", resolve.ErrUnauthorized)
	}
	ttl := time.Duration(t.ExpiresIn) * time.Second
	if ttl <= 0 {
		ttl = time.Hour
	}
	p.bearer, p.expires = t.AccessToken, p.now().Add(ttl-ttl/10)
	return p.bearer, nil
}

// get sends an authorized GET, renewing the access token once on a 401.
func (p *Resolver) get(ctx context.Context, u string, out any) error {
	for attempt := 0; ; attempt++ {
		tok, err := p.token(ctx, attempt > 0)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		err = p.c.Do(req, out)
		if attempt == 0 && p.clientID != "" && isUnauthorized(err) {
			continue
		}
		return err
	}
}

type personioPerson struct {
	ID            string `json:"id"`
	FirstName     string `json:"first_name"`
	LastName      string `json:"last_name"`
	PreferredName string `json:"preferred_name"`
	Email         string `json:"email"`
	Status        string `json:"status"`
}

type personioEmployments struct {
	Data []struct {
		ID        string `json:"id"`
		Status    string `json:"status"`
		StartDate string `json:"start_date"`
		Position  struct {
			Title string `json:"title"`
		} `json:"position"`
		Supervisor struct {
			ID string `json:"id"`
		} `json:"supervisor"`
		OrgUnits []struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		} `json:"org_units"`
		TerminationDate string `json:"termination_date"`
	} `json:"_data"`
}

// Resolve implements resolve.Resolver.
func (p *Resolver) Resolve(ctx context.Context, _, id string) (events.Person, error) {
	if err := resolve.CheckID(id); err != nil {
		return events.Person{}, err
	}
	var pr personioPerson
	if err := p.get(ctx, p.c.URL(nil, "v2", "persons", id), &pr); err != nil {
		return events.Person{}, err
	}
	var emps personioEmployments
	if err := p.get(ctx, p.c.URL(nil, "v2", "persons", id, "employments"), &emps); err != nil {
		return events.Person{}, err
	}
	out := events.Person{ID: id, Email: resolve.WorkEmail(pr.Email), Name: resolve.JoinName(pr.FirstName, pr.LastName)}
	if pr.PreferredName != "" {
		out.Name = resolve.JoinName(pr.PreferredName, pr.LastName)
	}
	status := pr.Status
	if n := len(emps.Data); n > 0 {
		// The latest employment: the one with the greatest start date.
		latest := emps.Data[0]
		for _, e := range emps.Data[1:] {
			if e.StartDate > latest.StartDate {
				latest = e
			}
		}
		status = latest.Status
		out.Title = latest.Position.Title
		var dept string
		for _, u := range latest.OrgUnits {
			if strings.EqualFold(u.Type, "department") {
				dept = u.ID
			}
		}
		out.Attributes = resolve.Attrs("employment_id", latest.ID, "department_id", dept, "supervisor_id", latest.Supervisor.ID,
			"termination_date", latest.TerminationDate, "personio.status", latest.Status)
	}
	switch strings.ToUpper(status) {
	case "ACTIVE":
		out.Status = events.Active
	case "LEAVE":
		out.Status = events.Suspended
	case "INACTIVE":
		out.Status = events.Terminated
	}
	// ONBOARDING (not started yet) leaves Status empty.
	return out, nil
}

func isUnauthorized(err error) bool { return errors.Is(err, resolve.ErrUnauthorized) }
