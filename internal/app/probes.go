package app

import (
	"context"
	"net/http"
	"time"
)

// ProbesOptions configure ProbesHandler.
type ProbesOptions struct {
	// Ready reports readiness for /readyz (nil = always ready).
	Ready func(context.Context) error
	// Metrics serves /metrics (nil = 404).
	Metrics http.Handler
}

// ProbesHandler serves /healthz, /readyz and /metrics and nothing else: the
// admin listener of a process without an operator API (cmd/webhook). It needs
// no token: the probes say ok or not ok, and /metrics is unauthenticated on
// every admin listener so that Prometheus can scrape it.
func ProbesHandler(o ProbesOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
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
