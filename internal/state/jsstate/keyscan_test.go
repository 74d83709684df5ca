package jsstate_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// rewriting runs write for every key in a loop, each key on its own
// goroutine, until the test's listing is over; it returns how many writes
// were made, so the test can show the listing overlapped them.
func rewriting(t *testing.T, keys []string, write func(ctx context.Context, key string, i int) error) func() int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var n atomic.Int64
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if err := write(ctx, k, i); err != nil && ctx.Err() == nil {
					t.Errorf("rewrite %s: %v", k, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	return func() int64 {
		cancel()
		wg.Wait()
		return n.Load()
	}
}

// A replica that beats while jml pause lists the replicas must be listed:
// nats.go's KV watcher, which Live used, ended its initial values early when
// a key was rewritten during the listing (about one list in four here), and
// a pause answered "complete" without a replica it never saw.
func TestPresenceLiveListsEveryReplicaWhileTheyBeat(t *testing.T) {
	_, _, js := natstest.Run(t)
	ctx := t.Context()
	p, err := jsstate.OpenPresence(ctx, js, jsstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"vm:101", "vm:102", "vm:103"}
	for _, id := range ids {
		if err := p.Beat(ctx, jsstate.Beat{ID: id, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	stop := rewriting(t, ids, func(ctx context.Context, id string, _ int) error {
		return p.Beat(ctx, jsstate.Beat{ID: id, At: time.Now()})
	})
	short := 0
	for range 300 {
		bs, err := p.Live(ctx, time.Now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != len(ids) {
			short++
			continue
		}
		for i, b := range bs {
			if b.ID != ids[i] {
				t.Fatalf("replicas %+v, want %v in order", bs, ids)
			}
		}
	}
	beats := stop()
	if short > 0 {
		t.Fatalf("%d of 300 replica lists missed a replica that was beating (%d beats meanwhile)", short, beats)
	}
	if beats < 300 {
		t.Fatalf("only %d beats during the listings: the race was not exercised", beats)
	}
}

// The directory listing a scheduled reconcile plans from must list every
// person even while their records are rewritten: a person missing from it
// would make their member an orphan, which `orphans: remove` removes.
func TestDirectoryListWhileRecordsAreRewritten(t *testing.T) {
	r, _, _ := openRecords(t, jsstate.Options{})
	ctx := t.Context()
	const n = 40
	var keys []string
	for i := range n {
		key := "id:E-" + strconv.Itoa(i)
		keys = append(keys, key)
		p := events.Person{ID: "E-" + strconv.Itoa(i), Email: fmt.Sprintf("p%d@acme.com", i), Status: events.Active}
		if _, _, err := r.Directory.Apply(ctx, key, p, state.Version{OccurredAt: t0, Source: "roster", Seq: 1}, "e"); err != nil {
			t.Fatal(err)
		}
	}
	stop := rewriting(t, keys[:n/2], func(ctx context.Context, key string, i int) error {
		_, err := r.Directory.Update(ctx, key, func(p state.PersonRecord) (state.PersonRecord, error) {
			p.Person.Department = "D" + strconv.Itoa(i)
			return p, nil
		})
		return err
	})
	for round := range 100 {
		seen := map[string]int{}
		for rec, err := range r.Directory.List(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			seen[rec.Key]++
		}
		for _, k := range keys {
			if seen[k] != 1 {
				stop()
				t.Fatalf("round %d: %s listed %d times, want once (%d keys listed)", round, k, seen[k], len(seen))
			}
		}
		if len(seen) != n {
			stop()
			t.Fatalf("round %d: %d keys listed, want %d", round, len(seen), n)
		}
	}
	if w := stop(); w < 100 {
		t.Fatalf("only %d rewrites during the listings: the race was not exercised", w)
	}
}

// The inbound SCIM server's user list (what Okta and Entra read back) must
// hold every user while users are being updated.
func TestSCIMListWhileDocumentsAreRewritten(t *testing.T) {
	_, _, js := natstest.Run(t)
	ctx := t.Context()
	s, err := jsstate.OpenSCIM(ctx, js, jsstate.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var ids []string
	for i := range n {
		id := "u" + strconv.Itoa(i)
		ids = append(ids, id)
		if _, _, err := s.Update(ctx, "Users", id, func([]byte) ([]byte, string, error) {
			return []byte(`{"v":0}`), "user" + strconv.Itoa(i), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	stop := rewriting(t, ids[:n/2], func(ctx context.Context, id string, i int) error {
		_, _, err := s.Update(ctx, "Users", id, func(old []byte) ([]byte, string, error) {
			return fmt.Appendf(nil, `{"v":%d}`, i+1), "user" + id[1:], nil
		})
		return err
	})
	for round := range 100 {
		got := map[string]int{}
		if err := s.List(ctx, "Users", func(id string, _ []byte) error { got[id]++; return nil }); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if got[id] != 1 {
				stop()
				t.Fatalf("round %d: user %s listed %d times, want once", round, id, got[id])
			}
		}
	}
	if w := stop(); w < 100 {
		t.Fatalf("only %d rewrites during the listings: the race was not exercised", w)
	}
}
