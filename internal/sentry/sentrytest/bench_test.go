package sentrytest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"
)

func largeSeed() *Seed {
	s := DemoSeed()
	s.Generate = &SeedGenerate{Members: 100_000, Teams: 2_000, TeamsPerMember: 2, PendingEvery: 200, IdPEvery: 10, TeamAdminEvery: 20}
	return s
}

// BenchmarkMemberPages fetches full per_page=100 member pages of a 100k-member
// org over loopback HTTP with 2 concurrent clients; the target is ≥ 1,000 pages/s.
func BenchmarkMemberPages(b *testing.B) {
	srv := NewServer(b, Options{Seed: largeSeed(), RateLimit: -1})
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	b.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	pages := len(srv.Members()) / 100
	fetch := func(page int) error {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/0/organizations/acme/members/?per_page=100&cursor=100:%d:0", srv.URL, page), nil)
		req.Header.Set("Authorization", "Bearer sandbox")
		res, err := hc.Do(req)
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil {
			return err
		}
		if res.StatusCode != 200 || n < 50_000 {
			return fmt.Errorf("page %d: status %d, %d bytes", page, res.StatusCode, n)
		}
		return nil
	}
	// warm the per-member JSON cache like a first reconcile would.
	cold := time.Now()
	for p := 0; p < pages; p++ {
		if err := fetch(p); err != nil {
			b.Fatal(err)
		}
	}
	coldRate := float64(pages) / time.Since(cold).Seconds()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan int)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range next {
				if err := fetch(p); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		next <- i % pages
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pages/s")
	b.ReportMetric(coldRate, "cold-pages/s")
}

// TestLargeSeedFile loads testdata/sentry/seed-large.json (100k members,
// 2k teams) and keeps it cheap to build and indexed.
func TestLargeSeedFile(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	f, err := os.Open("../../../testdata/sentry/seed-large.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seed, err := LoadSeed(f)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	srv := NewServer(t, Options{Seed: seed, RateLimit: -1})
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("building 100k members took %v", d)
	}
	srv.mu.RLock()
	n, teams := len(srv.st.memberOrder), len(srv.st.teams)
	srv.mu.RUnlock()
	if n != 100_005 || teams != 2_002 {
		t.Fatalf("members %d teams %d", n, teams)
	}
	// member pages + team pages + ≥1 page per team + 500 pending invites
	if got := srv.ReconcileMinimumCalls(); got < 1001+21+2002+500 || got > 1001+21+2*2002+500 {
		t.Fatalf("reconcile minimum = %d", got)
	}
	// an indexed query in the large org.
	c := newClient(t, srv)
	r := c.get(membersURL + "?query=email%3Auser054321%40acme.test")
	if l := r.list(t); len(l) != 1 || l[0]["email"] != "user054321@acme.test" {
		t.Fatalf("query = %s", r.body)
	}
}

func TestReconcileMinimumDemo(t *testing.T) {
	s := New(Options{})
	// 31 members → 1 page, 7 teams → 1 page, 7 team-member lists, 3 pending invites.
	if got := s.Stats().ReconcileMinimumCalls; got != 1+1+7+3 {
		t.Fatalf("reconcile minimum = %d", got)
	}
}
