package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
)

// DefaultMaxBody is the body limit when Options.MaxBody is 0.
const DefaultMaxBody = 1 << 20

// Publisher stores an event durably (JetStream) and returns after the ack.
type Publisher interface {
	Publish(ctx context.Context, e events.Event) (events.PublishResult, error)
}

// Options wire a Receiver.
type Options struct {
	Publisher      Publisher
	Sources        []sources.Source
	MaxBody        int64
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
	// Ready reports readiness for /readyz (nil = always ready).
	Ready func(ctx context.Context) error
	// Live reports liveness for /healthz (nil = always alive): it fails when
	// the NATS connection is closed for good, so the process is restarted.
	Live func(ctx context.Context) error
	// Extra mounts other handlers on the receiver's listener, e.g. the inbound
	// SCIM service provider at "/scim/v2/" (pattern → handler; traced).
	Extra map[string]http.Handler
	// MaxClockSkew is how far ahead of Now an event time may be (default
	// events.DefaultMaxClockSkew); later ones are refused with 400.
	MaxClockSkew time.Duration
	Now          func() time.Time
}

// Receiver serves the webhook routes.
type Receiver struct {
	o        Options
	mux      *http.ServeMux
	received metric.Int64Counter
	publish  metric.Float64Histogram
	// attrs holds the attribute sets of every series zeroInit exports,
	// built once in New and only read afterwards: recording a counter then
	// costs no attribute sorting or allocation per request.
	attrs map[seriesKey]metric.MeasurementOption
	// publishAttrs is the publish histogram's attribute set per source.
	publishAttrs map[string]metric.MeasurementOption
}

// seriesKey names one jml_events_received series.
type seriesKey struct{ source, typ, outcome string }

// New builds a Receiver. Publisher is required.
func New(o Options) (*Receiver, error) {
	if o.Publisher == nil {
		return nil, errors.New("receiver: Publisher is required")
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = events.DefaultMaxClockSkew
	}
	r := &Receiver{o: o, mux: http.NewServeMux(), attrs: map[seriesKey]metric.MeasurementOption{}, publishAttrs: map[string]metric.MeasurementOption{}}
	var err error
	m := meterOf(o.MeterProvider)
	if r.received, err = m.Int64Counter("jml_events_received",
		metric.WithDescription("Webhook events by source, type and outcome (accepted, duplicate, unauthorized, invalid, too_large, unavailable)")); err != nil {
		return nil, err
	}
	if r.publish, err = m.Float64Histogram("jml_publish_duration_seconds", metric.WithUnit("s"),
		metric.WithDescription("Time from the start of a JetStream publish to its ack"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)); err != nil {
		return nil, err
	}
	tp, prop := o.TracerProvider, o.Propagator
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	tel, err := newServerTelemetry(tp, m, prop)
	if err != nil {
		return nil, err
	}
	for _, s := range o.Sources {
		pattern := "POST /hooks/" + s.Name()
		r.mux.Handle(pattern, tel.handle(pattern, r.hook(s)))
		if _, ok := s.(sources.Handshaker); ok {
			get := "GET /hooks/" + s.Name()
			r.mux.Handle(get, tel.handle(get, r.hook(s)))
		}
	}
	for pattern, h := range o.Extra {
		r.mux.Handle(pattern, tel.handle(pattern, h))
	}
	r.mux.HandleFunc("GET /healthz", r.healthz)
	r.mux.HandleFunc("GET /readyz", r.readyz)
	r.zeroInit(context.Background())
	return r, nil
}

// ServeHTTP implements http.Handler.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.mux.ServeHTTP(w, req) }

func (r *Receiver) healthz(w http.ResponseWriter, req *http.Request) {
	if r.o.Live != nil {
		if err := r.o.Live(req.Context()); err != nil {
			r.o.Logger.ErrorContext(req.Context(), "not live", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "failed"})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (r *Receiver) readyz(w http.ResponseWriter, req *http.Request) {
	if r.o.Ready != nil {
		ctx, cancel := context.WithTimeout(req.Context(), 3*time.Second)
		defer cancel()
		if err := r.o.Ready(ctx); err != nil {
			// The reason is for operators (the log), not for whoever can reach this port.
			r.o.Logger.WarnContext(req.Context(), "not ready", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// SuccessStatuser is implemented by sources whose provider expects another
// success status than 202 (Okta Event Hooks: 200).
type SuccessStatuser interface{ SuccessStatus() int }

type accepted struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Ignored    int `json:"ignored,omitempty"`
}

func (r *Receiver) hook(s sources.Source) http.Handler {
	name := s.Name()
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx := req.Context()
		now := r.o.Now()
		if g, ok := s.(sources.Gate); ok && !g.Open(ctx) {
			// Not enabled yet (Gusto before it is armed or configured): the
			// same answer as a route that does not exist.
			http.NotFound(w, req)
			return
		}
		if a, ok := s.(sources.Authenticator); ok {
			// A static token is checked before the body is read.
			if err := a.Authenticate(req); err != nil {
				r.count(ctx, name, "", "unauthorized")
				r.o.Logger.WarnContext(ctx, "webhook refused", "source", name, "reason", err.Error(), "remote", req.RemoteAddr)
				writeError(w, http.StatusUnauthorized, "unauthorized")
				return
			}
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.o.MaxBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				r.count(ctx, name, "", "too_large")
				writeError(w, http.StatusRequestEntityTooLarge, "body exceeds the limit of "+itoa(r.o.MaxBody)+" bytes")
				return
			}
			r.count(ctx, name, "", "invalid")
			writeError(w, http.StatusBadRequest, "could not read the body")
			return
		}
		if hs, ok := s.(sources.Handshaker); ok {
			var hbody []byte
			if req.Method != http.MethodGet {
				hbody = body
			}
			if hs.Handshake(w, req, hbody) {
				r.count(ctx, name, "", "handshake")
				return
			}
		}
		if req.Method == http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "use POST")
			return
		}
		parsed, err := s.Parse(req, body, now)
		switch {
		case errors.Is(err, sources.ErrUnauthorized):
			r.count(ctx, name, "", "unauthorized")
			// Log the reason for operators; the sender learns nothing.
			r.o.Logger.WarnContext(ctx, "webhook refused", "source", name, "reason", err.Error(), "remote", req.RemoteAddr)
			writeError(w, http.StatusUnauthorized, "unauthorized")
			return
		case errors.Is(err, events.ErrInvalid):
			r.count(ctx, name, "", "invalid")
			r.o.Logger.InfoContext(ctx, "webhook rejected", "source", name, "reason", err.Error())
			writeError(w, http.StatusBadRequest, err.Error())
			return
		case err != nil:
			r.count(ctx, name, "", "error")
			r.o.Logger.ErrorContext(ctx, "webhook parse", "source", name, "err", err)
			writeError(w, http.StatusInternalServerError, "internal error")
			return
		}
		// Every event, from every source, passes the same limits and time
		// checks before anything derived from it reaches NATS.
		partial := false
		if pd, ok := s.(sources.PartialDelivery); ok {
			partial = pd.PartialDelivery()
		}
		kept, dropped := parsed.Events[:0:0], 0
		for _, ev := range parsed.Events {
			ev.ID = events.SafeID(ev.ID)
			if err := ev.Check(now, r.o.MaxClockSkew); err != nil {
				r.count(ctx, name, string(ev.Type), "invalid")
				r.o.Logger.InfoContext(ctx, "webhook rejected", "source", name, "reason", err.Error())
				if !partial {
					writeError(w, http.StatusBadRequest, err.Error())
					return
				}
				dropped++
				continue
			}
			kept = append(kept, ev)
		}
		parsed.Events = kept
		res := accepted{Ignored: parsed.Ignored + dropped}
		if parsed.Ignored > 0 {
			r.received.Add(ctx, int64(parsed.Ignored), r.seriesOpt(name, "", "ignored"))
		}
		publishOpt, ok := r.publishAttrs[name]
		if !ok {
			publishOpt = metric.WithAttributes(attribute.String("source", name))
		}
		logAccepted := r.o.Logger.Enabled(ctx, slog.LevelInfo)
		for _, ev := range parsed.Events {
			start := time.Now()
			pr, err := r.o.Publisher.Publish(ctx, ev)
			r.publish.Record(ctx, time.Since(start).Seconds(), publishOpt)
			if err != nil {
				r.count(ctx, name, string(ev.Type), "unavailable")
				r.o.Logger.ErrorContext(ctx, "publish failed; answering 503 so the sender retries",
					"source", name, "event_id", ev.ID, "err", err)
				w.Header().Set("Retry-After", "5")
				writeError(w, http.StatusServiceUnavailable, "event store unavailable, retry later")
				return
			}
			if pr.Duplicate {
				res.Duplicates++
				r.count(ctx, name, string(ev.Type), "duplicate")
			} else {
				res.Accepted++
				r.count(ctx, name, string(ev.Type), "accepted")
			}
			if logAccepted {
				// LogAttrs with typed attributes: no boxing of each value in an any.
				r.o.Logger.LogAttrs(ctx, slog.LevelInfo, "event accepted", slog.String("source", name), slog.String("event_id", ev.ID),
					slog.String("type", string(ev.Type)), slog.String("person", ev.Person.LogKey()),
					slog.Uint64("seq", pr.Sequence), slog.Bool("duplicate", pr.Duplicate))
			}
		}
		status := http.StatusAccepted
		if sc, ok := s.(SuccessStatuser); ok {
			status = sc.SuccessStatus()
		}
		res.write(w, status)
	})
}

// zeroInit exports the series of every enabled source at zero, so rates and
// alerts (unavailable, unauthorized) see them from the first scrape: the
// rejections, recorded before the event type is known (type ""), and the
// per-type results of a publish.
func (r *Receiver) zeroInit(ctx context.Context) {
	types := []events.Type{events.Joiner, events.Mover, events.Leaver, events.Rehire, events.Suspend, events.Update}
	for _, s := range r.o.Sources {
		name := s.Name()
		r.publishAttrs[name] = metric.WithAttributeSet(attribute.NewSet(attribute.String("source", name)))
		for _, outcome := range []string{"unauthorized", "invalid", "too_large", "error", "handshake", "ignored"} {
			r.attrs[seriesKey{name, "", outcome}] = seriesAttrs(name, "", outcome)
		}
		for _, outcome := range []string{"unauthorized", "invalid", "too_large", "error"} {
			r.received.Add(ctx, 0, r.attrs[seriesKey{name, "", outcome}])
		}
		for _, t := range types {
			for _, outcome := range []string{"accepted", "duplicate", "unavailable", "invalid"} {
				r.attrs[seriesKey{name, string(t), outcome}] = seriesAttrs(name, string(t), outcome)
			}
			for _, outcome := range []string{"accepted", "duplicate", "unavailable"} {
				r.received.Add(ctx, 0, r.attrs[seriesKey{name, string(t), outcome}])
			}
		}
	}
}

func seriesAttrs(source, typ, outcome string) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String("source", source), attribute.String("type", typ), attribute.String("outcome", outcome)))
}

// seriesOpt is the attribute set of a series, prebuilt when it is known.
func (r *Receiver) seriesOpt(source, typ, outcome string) metric.MeasurementOption {
	if o, ok := r.attrs[seriesKey{source, typ, outcome}]; ok {
		return o
	}
	return seriesAttrs(source, typ, outcome)
}

func (r *Receiver) count(ctx context.Context, source, typ, outcome string) {
	r.received.Add(ctx, 1, r.seriesOpt(source, typ, outcome))
}

// write answers with res as JSON, the same bytes encoding/json gives
// ({"accepted":1,"duplicates":0} and ",\"ignored\":n" when n > 0, then a
// newline), without reflection or an encoder per request.
func (a accepted) write(w http.ResponseWriter, status int) {
	b := make([]byte, 0, 64)
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(a.Accepted), 10)
	b = append(b, `,"duplicates":`...)
	b = strconv.AppendInt(b, int64(a.Duplicates), 10)
	if a.Ignored != 0 {
		b = append(b, `,"ignored":`...)
		b = strconv.AppendInt(b, int64(a.Ignored), 10)
	}
	b = append(b, "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
