package converge

import (
	"context"
	"iter"
	"strings"
	"sync"

	"github.com/sentry-jml/sentry-jml/internal/sentry"
)

// TokenRef is an org auth token and its creator.
type TokenRef struct {
	ID, Name, CreatorUserID string
}

// TokenIndex maps user ids to the org auth tokens they created, built from the
// audit log (org auth tokens carry no creator in the API). When warm, a leaver's
// tokens cost no lookup: one DELETE each.
type TokenIndex struct {
	mu      sync.RWMutex
	warm    bool
	byUser  map[string][]TokenRef
	revoked map[string]bool
}

// NewTokenIndex returns a cold index.
func NewTokenIndex() *TokenIndex {
	return &TokenIndex{byUser: map[string][]TokenRef{}, revoked: map[string]bool{}}
}

// Warm reports whether the index was built.
func (x *TokenIndex) Warm() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.warm
}

// CreatedBy returns the tokens userID created that are not known to be revoked.
func (x *TokenIndex) CreatedBy(userID string) []TokenRef {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []TokenRef
	for _, t := range x.byUser[userID] {
		if !x.revoked[t.ID] {
			out = append(out, t)
		}
	}
	return out
}

// Revoked marks a token gone.
func (x *TokenIndex) Revoked(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.revoked[id] = true
}

// Build rebuilds the index from the audit log's org-auth-token.create entries
// and the list of active tokens (revoked ones are dropped).
func (x *TokenIndex) Build(ctx context.Context, entries iter.Seq2[sentry.AuditLogEntry, error], active []sentry.OrgAuthToken) error {
	alive := map[string]bool{}
	for _, t := range active {
		alive[t.ID] = true
	}
	byUser := map[string][]TokenRef{}
	for e, err := range entries {
		if err != nil {
			return err
		}
		ref, ok := tokenRef(e)
		if !ok || !alive[ref.ID] {
			continue
		}
		byUser[ref.CreatorUserID] = append(byUser[ref.CreatorUserID], ref)
	}
	x.mu.Lock()
	x.byUser, x.revoked, x.warm = byUser, map[string]bool{}, true
	x.mu.Unlock()
	return nil
}

func tokenRef(e sentry.AuditLogEntry) (TokenRef, bool) {
	id := strings.Trim(string(e.TargetObject), `"`)
	if id == "" || id == "null" || e.Actor == nil || e.Actor.ID == "" {
		return TokenRef{}, false
	}
	ref := TokenRef{ID: id, CreatorUserID: e.Actor.ID}
	if n, ok := e.Data["name"].(string); ok {
		ref.Name = n
	}
	return ref, true
}
