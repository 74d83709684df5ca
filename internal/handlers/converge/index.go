package converge

import (
	"context"
	"iter"
	"strings"
	"sync"

	"github.com/sentry-jml/sentry-jml/internal/sentry"
)

// MemberIndex caches email → member id so a leaver costs one detail read and one
// removal instead of a search as well. Entries are hints: every hit is verified
// against the member's detail, and emails seen on several members are never
// answered from the index.
type MemberIndex struct {
	mu       sync.RWMutex
	ids      map[string]string
	disputed map[string]bool
}

// NewMemberIndex returns an empty index.
func NewMemberIndex() *MemberIndex {
	return &MemberIndex{ids: map[string]string{}, disputed: map[string]bool{}}
}

// Lookup returns the cached member id for email.
func (x *MemberIndex) Lookup(email string) (string, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e := strings.ToLower(email)
	if x.disputed[e] {
		return "", false
	}
	id, ok := x.ids[e]
	return id, ok
}

// Store records email → id.
func (x *MemberIndex) Store(email, id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ids[strings.ToLower(email)] = id
}

// Forget drops email.
func (x *MemberIndex) Forget(email string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.ids, strings.ToLower(email))
}

// Len is the number of cached emails.
func (x *MemberIndex) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.ids)
}

// Warm rebuilds the index from a full member listing (one request per 100
// members). Emails carried by several members are marked disputed.
func (x *MemberIndex) Warm(ctx context.Context, members iter.Seq2[sentry.Member, error]) (int, error) {
	ids := map[string]string{}
	disputed := map[string]bool{}
	add := func(email, id string) {
		if email == "" {
			return
		}
		e := strings.ToLower(email)
		if prev, ok := ids[e]; ok && prev != id {
			disputed[e] = true
		}
		ids[e] = id
	}
	for m, err := range members {
		if err != nil {
			return 0, err
		}
		add(m.Email, m.ID)
		if m.User != nil {
			add(m.User.Email, m.ID)
		}
	}
	n := len(ids) // read before publishing: Store writes into the map afterwards
	x.mu.Lock()
	x.ids, x.disputed = ids, disputed
	x.mu.Unlock()
	return n, nil
}
