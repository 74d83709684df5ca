package app

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// ProbesOptions configure ProbesHandler.
type ProbesOptions struct {
	// Ready reports readiness for /readyz (nil = always ready).
	Ready func(context.Context) error
	// Live reports liveness for /healthz (nil = always alive).
	Live func(context.Context) error
	// Metrics serves /metrics (nil = 404).
	Metrics http.Handler
}

// ProbesHandler serves /healthz, /readyz and /metrics and nothing else: the
// admin listener of a process without an operator API (cmd/webhook). It needs
// no token: the probes say ok or not ok, and /metrics is unauthenticated on
// every admin listener so that Prometheus can scrape it.
func ProbesHandler(o ProbesOptions) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", healthz(o.Live, nil))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if o.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
			defer cancel()
			if err := o.Ready(ctx); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	return mux
}

// healthz answers 200 while live returns nil, else 503 with no reason (the
// reason goes to the log).
func healthz(live func(context.Context) error, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if live != nil {
			if err := live(r.Context()); err != nil {
				if log != nil {
					log.ErrorContext(r.Context(), "not live", "err", err)
				}
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "failed"})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}
