package sentrytest

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestConcurrentLimit(t *testing.T) {
	srv := NewServer(t, Options{ConcurrentLimit: 1, Latency: 150 * time.Millisecond})
	c := newClient(t, srv)
	var wg sync.WaitGroup
	res := make([]resp, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 1 {
				time.Sleep(40 * time.Millisecond) // the first request holds the only slot
			}
			res[i] = c.get(membersURL + "me/")
		}()
	}
	wg.Wait()
	if res[0].status != 200 || res[1].status != 429 {
		t.Fatalf("statuses %d %d: %s", res[0].status, res[1].status, res[1].body)
	}
	if string(res[1].body) != `{"detail":"You are attempting to go above the allowed concurrency for this endpoint. Concurrency limit is 1"}` ||
		res[1].header.Get("X-Sentry-Rate-Limit-ConcurrentRemaining") != "0" {
		t.Fatalf("concurrency 429: %s %v", res[1].body, res[1].header)
	}
}

// Parallel removals, reads and SCIM calls leave a consistent organization
// (run with -race).
func TestConcurrentMutations(t *testing.T) {
	srv := NewServer(t, Options{Seed: bigSeed(200), RateLimit: -1})
	c := newClient(t, srv)
	var victims []MemberView
	for _, m := range srv.Members() {
		if m.OrgRole == "member" && !m.Flags["idp:provisioned"] && len(victims) < 80 {
			victims = append(victims, m)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(victims)*2)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(victims); i += 8 {
				path := membersURL + victims[i].ID + "/"
				if i%2 == 0 {
					path = scimUsers + "/" + victims[i].ID
				}
				if r := c.do("DELETE", path, nil); r.status != 204 {
					errs <- fmt.Errorf("delete %s: %d %s", victims[i].Email, r.status, r.body)
				}
				if r := c.get(membersURL + "?per_page=50"); r.status != 200 {
					errs <- fmt.Errorf("list: %d", r.status)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := srv.Stats()
	for _, v := range victims {
		if _, ok := srv.Member(v.Email); ok {
			t.Fatalf("%s still a member", v.Email)
		}
		if st.Mutations["member.remove"][v.Email] != 1 {
			t.Fatalf("%s removed %d times", v.Email, st.Mutations["member.remove"][v.Email])
		}
	}
	// pagination over the survivors still sees every member exactly once.
	seen := 0
	for p := 0; ; p++ {
		r := c.get(fmt.Sprintf("%s?cursor=100:%d:0", membersURL, p))
		seen += len(r.list(t))
		if m := linkRe.FindStringSubmatch(r.header.Get("Link")); m == nil || m[5] == "false" {
			break
		}
	}
	if seen != len(srv.Members()) {
		t.Fatalf("paged %d of %d", seen, len(srv.Members()))
	}
}
