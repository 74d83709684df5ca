package sentrytest

import (
	"fmt"
	"io"
	"net/http"
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

// TestLargeSeedBuild keeps the 100k/2k seed cheap to build (it runs in `go test`).
func TestLargeSeedBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	start := time.Now()
	s := New(Options{Seed: largeSeed()})
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("building 100k members took %v", d)
	}
	s.mu.RLock()
	n, teams := len(s.st.memberOrder), len(s.st.teams)
	s.mu.RUnlock()
	if n != 100_031 || teams != 2_007 {
		t.Fatalf("members %d teams %d", n, teams)
	}
	// an indexed query stays O(1): email lookup in the large org.
	srv := NewServer(t, Options{Seed: largeSeed(), RateLimit: -1})
	c := newClient(t, srv)
	r := c.get(membersURL + "?query=email%3Auser054321%40acme.test")
	if l := r.list(t); len(l) != 1 || l[0]["email"] != "user054321@acme.test" {
		t.Fatalf("query = %s", r.body)
	}
}
