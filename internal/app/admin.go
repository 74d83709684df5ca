package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/handlers/reconcile"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// AdminOptions configure the admin API.
type AdminOptions struct {
	Ready func(context.Context) error
	// Live reports liveness for /healthz (nil = always alive): Readiness.Live.
	Live    func(context.Context) error
	Metrics http.Handler
	// Operators are the credentials of /v1/*: every request there needs
	// "Authorization: Bearer <token>" of one of them, and the operator's name
	// is the actor of what it does. None configured: every /v1 request is
	// refused (the API fails closed; cmd/* makes that a config error).
	Operators []Operator
	// Loopback says the listener is bound to a loopback address: a Host that
	// is neither a loopback literal, localhost nor in AllowedHosts is refused
	// (DNS rebinding).
	Loopback bool
	// AllowedHosts are extra Host names ("name" or "name:port") accepted on a
	// loopback listener, e.g. for a port-forward.
	AllowedHosts []string
	// Logger receives the audit line of each authenticated request and the
	// reason /readyz fails (nil: discarded).
	Logger *slog.Logger
	// Status returns the JSON served at GET /v1/status.
	Status func(context.Context) any
	// Worker serves the operator actions (nil in processes without a worker).
	Worker *Worker
	// Routes registers more operator routes (reconcile, roster, access review…)
	// through handle, which adds auth, JSON encoding and error mapping.
	Routes []func(handle func(pattern string, f func(*http.Request) (any, error)))
}

// AdminHandler serves /healthz, /readyz, /metrics and the operator API under
// /v1, where every route is behind the guard (see AdminOptions.Operators).
func AdminHandler(o AdminOptions) http.Handler {
	h, _ := adminMux(o)
	return h
}

// adminMux builds the admin API and lists the patterns it registered. Only
// the open routes are on the outer mux; every /v1 route is on a mux that is
// reachable through the guard alone.
func adminMux(o AdminOptions) (http.Handler, []string) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	mux, v1 := http.NewServeMux(), http.NewServeMux()
	var patterns []string
	open := func(pattern string, h http.Handler) {
		patterns = append(patterns, pattern)
		mux.Handle(pattern, h)
	}
	open("GET /healthz", healthz(o.Live, o.Logger))
	open("GET /readyz", o.readyz())
	if o.Metrics != nil {
		open("GET /metrics", o.Metrics)
	}
	open("/v1/", newGuard(o).wrap(v1))
	handle := func(pattern string, f func(r *http.Request) (any, error)) {
		patterns = append(patterns, pattern)
		v1.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v, err := f(r)
			switch {
			case errors.Is(err, state.ErrNotFound):
				writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
			case errors.Is(err, errTooLarge):
				writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": err.Error()})
			case errors.Is(err, errBadRequest):
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			case errors.Is(err, state.ErrRunNotHalted), errors.Is(err, state.ErrRunExpired), errors.Is(err, errConflict):
				writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
			case err != nil:
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			default:
				if s, ok := v.(streamBody); ok {
					serveStream(w, s)
					return
				}
				writeJSON(w, http.StatusOK, v)
			}
		}))
	}
	if o.Status != nil {
		handle("GET /v1/status", func(r *http.Request) (any, error) { return o.Status(r.Context()), nil })
	}
	if wk := o.Worker; wk != nil {
		handle("GET /v1/plan", func(r *http.Request) (any, error) {
			email := r.URL.Query().Get("email")
			if email == "" {
				return nil, errBad("email is required")
			}
			return wk.Plan(r.Context(), email)
		})
		handle("POST /v1/plan/all", func(r *http.Request) (any, error) {
			// Preview: every person against the policy in the body (YAML), or the
			// policy in force when the body is empty. Nothing is changed.
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				return nil, errBad("could not read the policy")
			}
			ro := reconcile.RunOptions{DryRun: true, Trigger: "preview"}
			if len(bytes.TrimSpace(body)) > 0 {
				pol, err := policy.Parse("uploaded policy", body)
				if err != nil {
					return nil, errBad(err.Error())
				}
				ro.Policy = &pol
			}
			s, err := wk.reconcile()
			if err != nil {
				return nil, err
			}
			ro.RunID = s.rec.NewRunID()
			return s.startRun(r, "plan --all", ro.RunID, ro).answer(r)
		})
		handle("POST /v1/pause", func(r *http.Request) (any, error) {
			// Answers once every live replica enforces the pause (and has
			// nothing in flight), or after wait with the ones that did not.
			wait := 15 * time.Second
			if v, err := time.ParseDuration(r.URL.Query().Get("wait")); err == nil && v >= 0 && v <= 25*time.Second {
				wait = v
			}
			return wk.Gate().Pause(r.Context(), OperatorFrom(r.Context()), wait)
		})
		handle("POST /v1/resume", func(r *http.Request) (any, error) {
			return wk.Gate().Resume(r.Context(), OperatorFrom(r.Context()))
		})
		handle("POST /v1/approve", func(r *http.Request) (any, error) {
			id := r.URL.Query().Get("run_id")
			switch id {
			case "":
				return nil, errBad("run_id is required (a reconcile run id, or \"brakes\")")
			case "brakes":
				st, released, err := wk.Gate().ApproveBrakes(r.Context(), OperatorFrom(r.Context()))
				if errors.Is(err, jsstate.ErrNotHalted) || errors.Is(err, jsstate.ErrSameApprover) {
					return nil, &conflict{err.Error()}
				}
				if err != nil {
					return nil, err
				}
				return struct {
					jsstate.ControlState
					Released        bool `json:"released"`
					ApprovalsNeeded int  `json:"approvals_needed"`
				}{st, released, max(1, wk.o.Policy().Brakes.Approvals)}, nil
			}
			// A halted reconcile run: approve it and apply exactly its stored
			// plan, each step re-checked, as a job.
			return wk.approveRun(r, id)
		})
		handle("GET /v1/evidence", func(r *http.Request) (any, error) {
			email := r.URL.Query().Get("email")
			if email == "" {
				return nil, errBad("email is required")
			}
			out := []state.Evidence{}
			for e, err := range wk.Evidence(r.Context(), email) {
				if err != nil {
					return nil, err
				}
				out = append(out, e)
			}
			return map[string]any{"email": email, "records": out}, nil
		})
		handle("GET /v1/dlq", func(r *http.Request) (any, error) {
			es, err := wk.DLQ(r.Context())
			return map[string]any{"messages": es}, err
		})
		handle("POST /v1/dlq/replay", func(r *http.Request) (any, error) {
			var seq uint64
			if s := r.URL.Query().Get("seq"); s != "" && s != "all" {
				n, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					return nil, errBad("seq must be a number or \"all\"")
				}
				seq = n
			}
			n, err := wk.ReplayDLQ(r.Context(), seq)
			return map[string]any{"replayed": n}, err
		})
		handle("GET /v1/unresolved", func(r *http.Request) (any, error) {
			out := []jsstate.Unresolved{}
			for u, err := range wk.Unresolved(r.Context()) {
				if err != nil {
					return nil, err
				}
				out = append(out, u)
			}
			return map[string]any{"events": out}, nil
		})
		handle("GET /v1/control", func(r *http.Request) (any, error) { return wk.Gate().State(r.Context()) })
		handle("GET /v1/replicas", func(r *http.Request) (any, error) {
			// The live replicas that can change Sentry, and the control
			// revision each enforces (what jml pause waits for).
			bs, err := wk.Gate().Replicas(r.Context())
			return map[string]any{"replicas": bs}, err
		})
		handle("GET /v1/sources/gusto/key", func(r *http.Request) (any, error) {
			keys, err := jsstate.OpenSourceKeys(r.Context(), wk.js, jsstate.Options{Replicas: wk.o.Streams.Replicas}, "gusto")
			if err != nil {
				return nil, err
			}
			tok, saved, err := keys.ShowOnce(r.Context())
			if errors.Is(err, jsstate.ErrAlreadyShown) {
				return nil, errBad("the Gusto verification token was already shown once; it is never shown again")
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %w", state.ErrNotFound, err)
			}
			return map[string]any{"source": "gusto", "verification_token": tok, "received_at": saved}, nil
		})
		handle("POST /v1/sources/gusto/arm", func(r *http.Request) (any, error) {
			// Opens /hooks/gusto, fleet-wide, for exactly one verification POST
			// within the window (?for=10m by default, at most 1h).
			var d time.Duration
			if v := r.URL.Query().Get("for"); v != "" {
				var err error
				if d, err = time.ParseDuration(v); err != nil || d <= 0 || d > jsstate.MaxArmWindow {
					return nil, errBad("for: want a duration up to " + jsstate.MaxArmWindow.String() + ", e.g. 10m")
				}
			}
			keys, err := jsstate.OpenSourceKeys(r.Context(), wk.js, jsstate.Options{Replicas: wk.o.Streams.Replicas}, "gusto")
			if err != nil {
				return nil, err
			}
			until, err := keys.Arm(r.Context(), d, OperatorFrom(r.Context()))
			if err != nil {
				return nil, err
			}
			return map[string]any{"source": "gusto", "armed_until": until, "armed_by": OperatorFrom(r.Context()),
				"next": "create the Gusto webhook subscription now; its verification POST is accepted once, then run `jml sources show gusto`"}, nil
		})
	}
	if wk := o.Worker; wk != nil {
		wk.jobs.routes(handle, wk.o.Logger.InfoContext)
		wk.operationRoutes(handle)
	}
	for _, reg := range o.Routes {
		reg(handle)
	}
	return mux, patterns
}

// readyz answers ready or not, nothing more; the reason goes to the log.
func (o AdminOptions) readyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
			defer cancel()
			if err := o.Ready(ctx); err != nil {
				o.Logger.WarnContext(r.Context(), "not ready", "err", err)
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

var errBadRequest = errors.New("bad request")

// errConflict matches a *conflict: the request is valid but the state refuses it (409).
var errConflict = errors.New("conflict")

type conflict struct{ msg string }

func (c *conflict) Error() string   { return c.msg }
func (c *conflict) Is(t error) bool { return t == errConflict }

func errBad(msg string) error { return &badRequest{msg} }

type badRequest struct{ msg string }

func (b *badRequest) Error() string   { return b.msg }
func (b *badRequest) Is(t error) bool { return t == errBadRequest }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
