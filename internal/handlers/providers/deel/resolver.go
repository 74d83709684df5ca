package deel

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
)

// Resolver reads GET {base}/rest/v2/people/{worker_id}, and for a
// "contract:<id>" reference first GET {base}/rest/v2/contracts/{id} to find the
// worker, with "Authorization: Bearer <token>" (an API token or an OAuth access
// token). Default base: https://api.letsdeel.com. webhooks.md gives only the API
// host (the webhook events catalog at /rest/v2/webhooks/events); the people and
// contract endpoints and their fields (emails[], hiring_status, job_title,
// department, worker) follow developer.deel.com and are the least certain of the
// six resolvers.
type Resolver struct {
	c     resolve.Client
	token string
}

var _ resolve.Resolver = (*Resolver)(nil)

// NewResolver returns the Deel resolver.
func NewResolver(cfg resolve.Config) (*Resolver, error) {
	c, err := resolve.NewClient("deel", cfg.BaseURL, "https://api.letsdeel.com", cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("resolve deel: %w: API token is required", resolve.ErrNotConfigured)
	}
	return &Resolver{c: c, token: cfg.Token}, nil
}

type deelPersonWire struct {
	Data struct {
		ID        string `json:"id"`
		FirstName string `json:"first_name"`
		LastName  string `json:"last_name"`
		FullName  string `json:"full_name"`
		Emails    []struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"emails"`
		HiringStatus string `json:"hiring_status"`
		JobTitle     string `json:"job_title"`
		Department   struct {
			Name string `json:"name"`
		} `json:"department"`
	} `json:"data"`
}

type deelContract struct {
	Data struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Worker *struct {
			ID       string `json:"id"`
			Email    string `json:"email"`
			FullName string `json:"full_name"`
		} `json:"worker"`
	} `json:"data"`
}

func (d *Resolver) get(ctx context.Context, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	return d.c.Do(req, out)
}

// Resolve implements resolve.Resolver.
func (d *Resolver) Resolve(ctx context.Context, _, id string) (events.Person, error) {
	var contract *deelContract
	if cid, ok := strings.CutPrefix(id, ContractPrefix); ok {
		if err := resolve.CheckID(cid); err != nil {
			return events.Person{}, err
		}
		contract = &deelContract{}
		if err := d.get(ctx, d.c.URL(nil, "rest", "v2", "contracts", cid), contract); err != nil {
			return events.Person{}, err
		}
		w := contract.Data.Worker
		if w == nil || (w.ID == "" && resolve.WorkEmail(w.Email) == "") {
			return events.Person{}, fmt.Errorf("%w: contract %s names no worker", resolve.ErrUnresolvable, cid)
		}
		if w.ID == "" {
			return events.Person{Email: resolve.WorkEmail(w.Email), Name: w.FullName, Status: deelStatus(contract.Data.Status),
				Attributes: resolve.Attrs("contract_id", cid)}, nil
		}
		id = w.ID
	}
	if err := resolve.CheckID(id); err != nil {
		return events.Person{}, err
	}
	var pr deelPersonWire
	if err := d.get(ctx, d.c.URL(nil, "rest", "v2", "people", id), &pr); err != nil {
		return events.Person{}, err
	}
	e := pr.Data
	p := events.Person{ID: id, Name: e.FullName, Title: e.JobTitle, Department: e.Department.Name,
		Status: deelStatus(e.HiringStatus), Attributes: resolve.Attrs("deel.hiring_status", e.HiringStatus)}
	if p.Name == "" {
		p.Name = resolve.JoinName(e.FirstName, e.LastName)
	}
	for _, pref := range []string{"work", "primary"} {
		for _, em := range e.Emails {
			if p.Email == "" && strings.EqualFold(em.Type, pref) {
				p.Email = resolve.WorkEmail(em.Value)
			}
		}
	}
	if contract != nil {
		p.Attributes = resolve.Attrs("deel.hiring_status", e.HiringStatus, "contract_id", contract.Data.ID)
	}
	return p, nil
}

func deelStatus(s string) events.Status {
	switch strings.ToLower(s) {
	case "active":
		return events.Active
	case "terminated", "cancelled", "canceled", "ended":
		return events.Terminated
	}
	return ""
}
