package jsstate_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// BenchmarkDirectoryList lists a directory of 5,000 people: the consumer
// streams the records, and the key scan's subject state (read first) costs
// one stream-info request listing every key.
func BenchmarkDirectoryList(b *testing.B) {
	const n = 5000
	_, _, js := natstest.Run(b)
	srvRecords, err := jsstate.Open(b.Context(), js, jsstate.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		key := "id:E-" + strconv.Itoa(i)
		rec := state.PersonRecord{Key: key, Person: events.Person{ID: "E-" + strconv.Itoa(i), Email: fmt.Sprintf("p%d@acme.com", i),
			Status: events.Active}, Version: state.Version{OccurredAt: t0, Source: "roster", Seq: uint64(i)}}
		v, _ := json.Marshal(rec)
		if _, err := js.PublishAsync("$KV."+jsstate.BucketDirectory+"."+b64(key), v); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		b.Fatal("seeding timed out")
	}
	b.ResetTimer()
	for b.Loop() {
		count := 0
		for _, err := range srvRecords.Directory.List(b.Context()) {
			if err != nil {
				b.Fatal(err)
			}
			count++
		}
		if count != n {
			b.Fatalf("listed %d of %d", count, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n*1000, "ns/record")
}
