package jsstate_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// BenchmarkEvidenceAppend16 appends records for 500 people from 16
// goroutines of one process (the worker's default concurrency), on file
// storage, after one record per person (so a chain's head is known to the
// process, as for a person it handled before): ns/op is the wall time per
// record at that concurrency, cpu-µs/op the process's CPU (the embedded NATS
// server's included).
func BenchmarkEvidenceAppend16(b *testing.B) {
	_, _, js := natstest.Run(b)
	r, err := jsstate.Open(context.Background(), js, jsstate.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 500 {
		if _, err := r.Evidence.Append(context.Background(), state.Evidence{PersonKey: fmt.Sprintf("id:E-%d", i), Kind: state.EvidenceConvergence}); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.SetParallelism(8) // 8 × GOMAXPROCS(2) = 16 goroutines
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	defer func() {
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		cpu := (ru1.Utime.Nano() + ru1.Stime.Nano()) - (ru0.Utime.Nano() + ru0.Stime.Nano())
		b.ReportMetric(float64(cpu)/1e3/float64(b.N), "cpu-µs/op")
	}()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := r.Evidence.Append(context.Background(), state.Evidence{PersonKey: fmt.Sprintf("id:E-%d", i%500),
				Kind: state.EvidenceConvergence, Outcome: "applied"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
