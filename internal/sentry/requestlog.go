package sentry

import (
	"context"
	"sync"
	"time"
)

// RequestRecord is one HTTP request sent to Sentry, for the evidence of the
// convergence that made it: method, path (never the query or a header),
// the status answered (0 when none came), when it was sent and how long
// it took, and the transport error when there was no answer.
type RequestRecord struct {
	Method   string
	Path     string
	Status   int
	At       time.Time
	Duration time.Duration
	Err      string
}

// RequestLog collects the requests made under a context (WithRequestLog).
type RequestLog struct {
	mu   sync.Mutex
	recs []RequestRecord
}

type requestLogKey struct{}

// WithRequestLog returns ctx carrying a new RequestLog: every request the
// client sends under it (retries included, requests the safety gate held
// excluded: they were not sent) is appended to the log.
func WithRequestLog(ctx context.Context) (context.Context, *RequestLog) {
	l := &RequestLog{}
	return context.WithValue(ctx, requestLogKey{}, l), l
}

// Records returns a copy of the requests logged so far, in order.
func (l *RequestLog) Records() []RequestRecord {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]RequestRecord(nil), l.recs...)
}

func logRequest(ctx context.Context, r RequestRecord) {
	l, _ := ctx.Value(requestLogKey{}).(*RequestLog)
	if l == nil {
		return
	}
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
}
