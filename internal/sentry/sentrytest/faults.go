package sentrytest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FaultKind selects what an injected fault does.
type FaultKind string

// Fault kinds.
const (
	FaultError     FaultKind = "error"      // answer Status (default 500) with Body (default Sentry's 500 body)
	FaultRateLimit FaultKind = "rate_limit" // answer 429 exactly like the rate limiter, Remaining 0
	FaultTimeout   FaultKind = "timeout"    // hold the request until the client gives up (or Latency, default 30s), then 504
	FaultDrop      FaultKind = "drop"       // close the connection without a response
	FaultLatency   FaultKind = "latency"    // only add Latency, then serve normally
)

// Fault injects a failure into matching API requests.
type Fault struct {
	Pattern string        `json:"pattern"` // route pattern as reported in Stats; "" = every API route; a trailing "*" matches a prefix
	Method  string        `json:"method"`  // "" = any method
	Kind    FaultKind     `json:"kind"`    // default FaultError
	Status  int           `json:"status"`  // FaultError status, default 500
	Body    string        `json:"body"`    // FaultError raw JSON body
	Rate    float64       `json:"rate"`    // probability per matching request; 0 = 1 (always)
	Count   int           `json:"count"`   // number of requests to affect; 0 = unlimited
	Latency time.Duration `json:"-"`       // extra latency (JSON: "latency": "250ms")
	After   bool          `json:"after"`   // run the handler first (the change is applied), then replace the response
}

type faultWire struct {
	Pattern string    `json:"pattern"`
	Method  string    `json:"method,omitempty"`
	Kind    FaultKind `json:"kind,omitempty"`
	Status  int       `json:"status,omitempty"`
	Body    string    `json:"body,omitempty"`
	Rate    float64   `json:"rate,omitempty"`
	Count   int       `json:"count,omitempty"`
	Latency string    `json:"latency,omitempty"`
	After   bool      `json:"after,omitempty"`
}

// MarshalJSON encodes Latency as a Go duration string.
func (f Fault) MarshalJSON() ([]byte, error) {
	w := faultWire{Pattern: f.Pattern, Method: f.Method, Kind: f.Kind, Status: f.Status, Body: f.Body,
		Rate: f.Rate, Count: f.Count, After: f.After}
	if f.Latency > 0 {
		w.Latency = f.Latency.String()
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("sentrytest: encode fault: %w", err)
	}
	return b, nil
}

// UnmarshalJSON decodes Latency from a Go duration string.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var w faultWire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("sentrytest: decode fault: %w", err)
	}
	*f = Fault{Pattern: w.Pattern, Method: w.Method, Kind: w.Kind, Status: w.Status, Body: w.Body,
		Rate: w.Rate, Count: w.Count, After: w.After}
	if w.Latency != "" {
		d, err := time.ParseDuration(w.Latency)
		if err != nil {
			return fmt.Errorf("sentrytest: fault latency: %w", err)
		}
		f.Latency = d
	}
	return nil
}

type activeFault struct {
	Fault
	left int // remaining injections, -1 = unlimited
}

type faultSet struct {
	mu     sync.Mutex
	rng    *rand.Rand
	faults []*activeFault
}

// InjectFault adds a fault; faults are tried in the order added and the
// first one that fires applies.
func (s *Sandbox) InjectFault(f Fault) {
	if f.Kind == "" {
		f.Kind = FaultError
	}
	af := &activeFault{Fault: f, left: f.Count}
	if f.Count == 0 {
		af.left = -1
	}
	s.faults.mu.Lock()
	s.faults.faults = append(s.faults.faults, af)
	s.faults.mu.Unlock()
}

// ClearFaults removes every fault.
func (s *Sandbox) ClearFaults() {
	s.faults.mu.Lock()
	s.faults.faults = nil
	s.faults.mu.Unlock()
}

// Faults lists the active faults with their remaining counts.
func (s *Sandbox) Faults() []Fault {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	out := make([]Fault, 0, len(s.faults.faults))
	for _, f := range s.faults.faults {
		c := f.Fault
		if f.left >= 0 {
			c.Count = f.left
		}
		out = append(out, c)
	}
	return out
}

func (fs *faultSet) match(pattern, method string) *Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.faults) == 0 {
		return nil
	}
	for i, f := range fs.faults {
		if f.Method != "" && !strings.EqualFold(f.Method, method) {
			continue
		}
		if f.Pattern != "" {
			if p, ok := strings.CutSuffix(f.Pattern, "*"); ok {
				if !strings.HasPrefix(pattern, p) {
					continue
				}
			} else if f.Pattern != pattern {
				continue
			}
		}
		if f.Rate > 0 && f.Rate < 1 && fs.rng.Float64() >= f.Rate {
			continue
		}
		if f.left > 0 {
			f.left--
			if f.left == 0 {
				fs.faults = append(fs.faults[:i:i], fs.faults[i+1:]...)
			}
		}
		c := f.Fault
		return &c
	}
	return nil
}

// applyFault answers the request according to f; it returns false for
// latency-only faults (the request is then served normally).
func (s *Sandbox) applyFault(sw *statusWriter, r *http.Request, f *Fault) bool {
	switch f.Kind {
	case FaultLatency:
		return false
	case FaultRateLimit:
		s.stats.fault()
		lim := s.opts.RateLimit
		if lim <= 0 {
			lim = 40
		}
		hd := sw.Header()
		hd.Set("X-Sentry-Rate-Limit-Limit", strconv.Itoa(lim))
		hd.Set("X-Sentry-Rate-Limit-Remaining", "0")
		hd.Set("X-Sentry-Rate-Limit-Reset", strconv.FormatInt(s.now().Unix()+1, 10))
		hd.Set("X-Sentry-Rate-Limit-ConcurrentLimit", strconv.Itoa(s.opts.ConcurrentLimit))
		hd.Set("X-Sentry-Rate-Limit-ConcurrentRemaining", strconv.Itoa(s.opts.ConcurrentLimit-1))
		writeRateLimited(sw, fmt.Sprintf("You are attempting to use this endpoint too frequently. Limit is %d requests in 1 seconds", lim))
		return true
	case FaultTimeout:
		s.stats.fault()
		d := f.Latency
		if d <= 0 {
			d = 30 * time.Second
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			sw.Header().Set("Content-Type", "text/plain")
			sw.WriteHeader(http.StatusGatewayTimeout)
			_, _ = sw.Write([]byte("upstream request timeout"))
		case <-r.Context().Done():
			sw.status = 499 // client closed request (nginx convention)
		}
		return true
	case FaultDrop:
		s.stats.fault()
		sw.status = 0
		if hj, ok := sw.ResponseWriter.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler)
	default:
		s.stats.fault()
		status := f.Status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		body := f.Body
		if body == "" {
			body = `{"detail":"Internal Error","errorId":"sandbox-injected-fault"}`
		}
		writeRaw(sw, status, []byte(body))
		return true
	}
}

// writeRateLimited answers 429 as Sentry's RatelimitMiddleware does
// (src/sentry/middleware/ratelimit.py): the JSON {"detail": msg} in a plain
// Django HttpResponse, whose Content-Type is the default text/html.
func writeRateLimited(w http.ResponseWriter, msg string) {
	b, _ := json.Marshal(detail(msg))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(b)
}
