package roster_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/roster"
	"github.com/sentry-jml/sentry-jml/internal/state"
)

// genRoster streams a CSV roster of about size bytes, generated row by row
// (never held): rows of about 190 bytes, each with an id, an email, a name,
// a department, a title, four groups and a manager.
type genRoster struct {
	size, off int64
	i         int
	buf       []byte
}

func newGenRoster(size int64) *genRoster {
	return &genRoster{size: size, buf: []byte("id,email,name,status,department,title,groups,manager_email\n")}
}

func (g *genRoster) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(g.buf) == 0 {
			if g.off >= g.size {
				break
			}
			g.i++
			g.buf = fmt.Appendf(g.buf[:0], "E%08d,firstname.lastname%08d@acme-corporation.example,Firstname%08d Lastname,active,Engineering Platform,Senior Software Engineer,engineering;platform;on-call;all-staff,manager%05d@acme-corporation.example\n",
				g.i, g.i, g.i, g.i%50000)
		}
		c := copy(p[n:], g.buf)
		g.buf = g.buf[c:]
		n += c
		g.off += int64(c)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// nullDirectory is a directory that keeps nothing (every person is new and
// every write applies), so that what is measured is the import's memory, not
// a store's.
type nullDirectory struct{}

func (nullDirectory) Get(context.Context, string) (state.PersonRecord, error) {
	return state.PersonRecord{}, state.ErrNotFound
}

func (nullDirectory) Apply(_ context.Context, key string, p events.Person, v state.Version, id string) (state.PersonRecord, bool, error) {
	rec, applied := state.ApplyEvent(state.PersonRecord{}, key, p, v, id)
	return rec, applied, nil
}

func (nullDirectory) Update(_ context.Context, key string, fn func(state.PersonRecord) (state.PersonRecord, error)) (state.PersonRecord, error) {
	return fn(state.PersonRecord{Key: key})
}

func (nullDirectory) List(context.Context) iter.Seq2[state.PersonRecord, error] {
	return func(func(state.PersonRecord, error) bool) {}
}

func (nullDirectory) Link(context.Context, string, string, string) error { return nil }

func (nullDirectory) Resolve(context.Context, string, string) (string, error) {
	return "", state.ErrNotFound
}

// peakHeap runs f while sampling the heap (live and not yet swept objects,
// runtime/metrics /memory/classes/heap/objects:bytes) every millisecond and
// returns the peak above the heap before f.
func peakHeap(f func()) uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	base := s[0].Value.Uint64()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	if peak < base {
		return 0
	}
	return peak - base
}

var asOf = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// importStreaming imports a generated roster of size bytes row by row.
func importStreaming(tb testing.TB, size int64, full bool) roster.Result {
	res, err := roster.ImportReader(context.Background(), nullDirectory{}, "gen", newGenRoster(size), roster.ImportOptions{AsOf: asOf, Full: full})
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// importBuffered is the former implementation's shape, for the baseline:
// the whole body read into memory, parsed into a slice of rows, imported.
func importBuffered(tb testing.TB, size int64) roster.Result {
	body, err := io.ReadAll(newGenRoster(size))
	if err != nil {
		tb.Fatal(err)
	}
	rows, err := roster.Parse("gen", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	res, err := roster.Import(context.Background(), nullDirectory{}, rows, roster.ImportOptions{AsOf: asOf})
	if err != nil {
		tb.Fatal(err)
	}
	runtime.KeepAlive(body)
	return res
}

// TestImportMemoryDoesNotFollowTheInput imports generated rosters of 8 and
// 32 MiB row by row: the peak heap stays below half the input (the buffered
// shape needs six times the input) and grows by less than half of what the
// input grows; the only per-row state is the duplicate check's 64-bit
// hashes (two a row).
func TestImportMemoryDoesNotFollowTheInput(t *testing.T) {
	const small, large = 8 << 20, 32 << 20
	var resSmall, resLarge roster.Result
	pSmall := peakHeap(func() { resSmall = importStreaming(t, small, false) })
	pLarge := peakHeap(func() { resLarge = importStreaming(t, large, false) })
	pBuffered := peakHeap(func() { importBuffered(t, large) })
	t.Logf("rows %d / %d; peak heap %.1f MiB (8 MiB roster), %.1f MiB (32 MiB roster), buffered %.1f MiB (32 MiB roster)",
		resSmall.Rows, resLarge.Rows, mib(pSmall), mib(pLarge), mib(pBuffered))
	if resLarge.Rows < 150_000 || resLarge.Applied != resLarge.Rows {
		t.Fatalf("imported %+v", resLarge)
	}
	if pLarge > large/2 || pLarge*10 > pBuffered {
		t.Fatalf("peak heap %.1f MiB for a 32 MiB roster (buffered: %.1f MiB)", mib(pLarge), mib(pBuffered))
	}
	if pLarge-min(pLarge, pSmall) > (large-small)/2 {
		t.Fatalf("peak heap grew by %.1f MiB for 24 MiB more input", mib(pLarge-min(pLarge, pSmall)))
	}
	if pBuffered < 2*large {
		t.Fatalf("the buffered baseline peaked at %.1f MiB: the measurement does not see memory", mib(pBuffered))
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// BenchmarkImport256MiB imports a generated 256 MiB roster (about 1.4
// million rows) row by row, with and without --full, and the former
// buffered shape for comparison; it reports the peak heap (docs/benchmarks.md).
// go test -run '^$' -bench Import256MiB -benchtime 1x ./internal/roster/
func BenchmarkImport256MiB(b *testing.B) {
	const size = 256 << 20
	for _, bc := range []struct {
		name string
		run  func(testing.TB) roster.Result
	}{
		{"streaming", func(tb testing.TB) roster.Result { return importStreaming(tb, size, false) }},
		{"streaming-full", func(tb testing.TB) roster.Result { return importStreaming(tb, size, true) }},
		{"buffered-baseline", func(tb testing.TB) roster.Result { return importBuffered(tb, size) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var peak uint64
			var res roster.Result
			for b.Loop() {
				peak = max(peak, peakHeap(func() { res = bc.run(b) }))
			}
			b.ReportMetric(mib(peak), "peak-heap-MiB")
			b.ReportMetric(float64(res.Rows), "rows")
			b.SetBytes(size)
		})
	}
}
