package converge

import (
	"context"
	"sync"
	"time"
)

// teamCache knows which teams exist and which are IdP-provisioned. It is
// refreshed from the team list when stale, and a team missing from it is re-read
// before a step uses it.
type teamCache struct {
	api    Sentry
	ttl    time.Duration
	now    func() time.Time
	mu     sync.Mutex
	teams  map[string]teamInfo
	loaded time.Time
}

func newTeamCache(api Sentry, ttl time.Duration, now func() time.Time) *teamCache {
	return &teamCache{api: api, ttl: ttl, now: now, teams: map[string]teamInfo{}}
}

func (tc *teamCache) get(ctx context.Context, slug string) teamInfo {
	tc.mu.Lock()
	stale := tc.now().Sub(tc.loaded) > tc.ttl
	tc.mu.Unlock()
	if stale {
		tc.refresh(ctx)
	}
	tc.mu.Lock()
	ti, ok := tc.teams[slug]
	tc.mu.Unlock()
	if ok && ti.exists {
		return ti
	}
	t, err := tc.api.GetTeam(ctx, slug)
	if err != nil {
		return teamInfo{exists: false}
	}
	ti = teamInfo{exists: true, idp: t.IdPProvisioned()}
	tc.mu.Lock()
	tc.teams[slug] = ti
	tc.mu.Unlock()
	return ti
}

func (tc *teamCache) refresh(ctx context.Context) {
	teams := map[string]teamInfo{}
	for t, err := range tc.api.ListTeams(ctx, "") {
		if err != nil {
			// Keep what we had; retry after the TTL rather than on every call.
			tc.mu.Lock()
			tc.loaded = tc.now()
			tc.mu.Unlock()
			return
		}
		teams[t.Slug] = teamInfo{exists: true, idp: t.IdPProvisioned()}
	}
	tc.mu.Lock()
	tc.teams, tc.loaded = teams, tc.now()
	tc.mu.Unlock()
}
