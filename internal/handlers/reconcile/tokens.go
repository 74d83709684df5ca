package reconcile

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
)

// TokenFinding is one org auth token that fails token hygiene.
type TokenFinding struct {
	TokenID  string     `json:"token_id"`
	Name     string     `json:"name"`
	Created  time.Time  `json:"date_created"`
	LastUsed *time.Time `json:"date_last_used,omitempty"`
	Creator  string     `json:"creator_user_id,omitempty"`
	Reasons  []string   `json:"reasons"`
	Action   string     `json:"action"`           // report | revoke
	Result   string     `json:"result,omitempty"` // revoke: done, already_gone, error: …
}

// checkToken returns why t fails hygiene (nil = healthy). isMember tells
// whether a user id is still a member ("" creator = unknown, not checked).
func checkToken(t sentry.OrgAuthToken, creator string, isMember func(string) bool, th policy.TokenHygiene, now time.Time) []string {
	var why []string
	if creator != "" && !isMember(creator) {
		why = append(why, "creator (user "+creator+") is no longer a member")
	}
	if th.UnusedDays > 0 {
		last := t.DateCreated
		if t.DateLastUsed != nil {
			last = *t.DateLastUsed
		}
		if now.Sub(last) > time.Duration(th.UnusedDays)*24*time.Hour {
			if t.DateLastUsed == nil {
				why = append(why, fmt.Sprintf("never used in %d days", th.UnusedDays))
			} else {
				why = append(why, fmt.Sprintf("unused for more than %d days (last used %s)", th.UnusedDays, last.UTC().Format("2006-01-02")))
			}
		}
	}
	if th.MaxAgeDays > 0 && now.Sub(t.DateCreated) > time.Duration(th.MaxAgeDays)*24*time.Hour {
		why = append(why, fmt.Sprintf("older than %d days (created %s)", th.MaxAgeDays, t.DateCreated.UTC().Format("2006-01-02")))
	}
	return why
}

// tokenFindings turns a run's token reads into steps (revoke) or reports.
func tokenFindings(org *orgState, pol policy.Policy, now time.Time) ([]PlannedStep, []Report) {
	if len(org.tokens) == 0 {
		return nil, nil
	}
	users := make(map[string]bool, len(org.members))
	for i := range org.members {
		if org.members[i].UserID != "" {
			users[org.members[i].UserID] = true
		}
	}
	isMember := func(u string) bool { return users[u] }
	var steps []PlannedStep
	var reports []Report
	for _, t := range org.tokens {
		why := checkToken(t, org.creator[t.ID], isMember, pol.TokenHygiene, now)
		if len(why) == 0 {
			continue
		}
		reason := strings.Join(why, "; ")
		reports = append(reports, Report{Kind: "token", TokenID: t.ID, Detail: t.Name + ": " + reason})
		if pol.TokenHygiene.ActionOrDefault() == "revoke" {
			steps = append(steps, PlannedStep{Step: converge.Step{Action: converge.ActRevokeToken, TokenID: t.ID, Token: t.Name}, Reason: reason})
		}
	}
	return steps, reports
}

func entries(es []sentry.AuditLogEntry) iter.Seq2[sentry.AuditLogEntry, error] {
	return func(yield func(sentry.AuditLogEntry, error) bool) {
		for _, e := range es {
			if !yield(e, nil) {
				return
			}
		}
	}
}

// TokenHygiene checks every org auth token against the policy's
// token_hygiene and reports or (action: revoke, unless dryRun) revokes the
// ones that fail. A creator's membership costs one member query per distinct
// creator, not a full member listing.
func (r *Reconciler) TokenHygiene(ctx context.Context, dryRun bool) ([]TokenFinding, error) {
	ctx = sentry.WithPriority(ctx, sentry.PriorityReconcile)
	api := r.o.Sentry
	pol := r.o.Policy()
	ts, err := api.ListOrgAuthTokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("list org auth tokens: %w", err)
	}
	out := []TokenFinding{}
	if len(ts) == 0 {
		return out, nil
	}
	creator := map[string]string{}
	for e, err := range api.AuditLogs(ctx, sentry.AuditLogQuery{Event: "org-auth-token.create"}) {
		if err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		if id := e.TargetObjectID(); id != "" && e.ActorUserID() != "" {
			if _, seen := creator[id]; !seen {
				creator[id] = e.ActorUserID()
			}
		}
	}
	memberOf := map[string]bool{}
	var qerr error
	isMember := func(u string) bool {
		if v, ok := memberOf[u]; ok {
			return v
		}
		found := false
		for _, err := range api.ListMembers(ctx, "user.id:"+u) {
			if err != nil {
				qerr = err
				return true // unknown: never revoke on a failed read
			}
			found = true
			break
		}
		memberOf[u] = found
		return found
	}
	action := pol.TokenHygiene.ActionOrDefault()
	lctx := ctx
	if action == "revoke" && !dryRun {
		// Revocations are organization-wide changes: they run under the
		// token job's fleet lease, which the safety gate requires.
		var release func()
		if lctx, release, err = r.lockRun(ctx, "reconcile:tokens"); err != nil {
			return nil, err
		}
		defer release()
	}
	for _, t := range ts {
		why := checkToken(t, creator[t.ID], isMember, pol.TokenHygiene, r.o.Now())
		if qerr != nil {
			return nil, fmt.Errorf("member query: %w", qerr)
		}
		if len(why) == 0 {
			continue
		}
		f := TokenFinding{TokenID: t.ID, Name: t.Name, Created: t.DateCreated, LastUsed: t.DateLastUsed, Creator: creator[t.ID],
			Reasons: why, Action: action}
		if action == "revoke" && !dryRun {
			f.Result = r.revokeToken(lctx, t.ID)
		}
		r.m.tokens.Add(ctx, 1)
		out = append(out, f)
	}
	return out, nil
}

func (r *Reconciler) revokeToken(ctx context.Context, id string) string {
	switch err := r.o.Sentry.DeleteOrgAuthToken(ctx, id); {
	case err == nil:
		if r.o.Tokens != nil {
			r.o.Tokens.Revoked(id)
		}
		return "done"
	case isNotFound(err):
		return "already_gone"
	default:
		return errResult(err)
	}
}
