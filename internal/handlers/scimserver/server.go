package scimserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// Publisher stores an event durably (JetStream) and returns after the ack.
// events.Publisher implements it.
type Publisher interface {
	Publish(ctx context.Context, e events.Event) (events.PublishResult, error)
}

// Store keeps resources as opaque JSON documents by kind ("Users", "Groups") and
// id, with an optional case-insensitive unique name per document (userName).
// jsstate.SCIMStore implements it on the JML_SCIM bucket.
//
// Get and Lookup return an error wrapping state.ErrNotFound for a missing
// document. Update reads the document, calls fn with it (nil when absent) and
// writes fn's result under compare-and-set, calling fn again when a concurrent
// write won; fn returning nil data deletes, returning the old bytes and name
// writes nothing, and an error from fn is returned unchanged. When the new name
// belongs to another document, nothing is written and takenBy is its id. Any
// other error means the store is unavailable (the server answers 503).
type Store interface {
	Get(ctx context.Context, kind, id string) ([]byte, error)
	Lookup(ctx context.Context, kind, name string) (id string, data []byte, err error)
	List(ctx context.Context, kind string, fn func(id string, data []byte) error) error
	Update(ctx context.Context, kind, id string, fn func(old []byte) (data []byte, name string, err error)) (data []byte, takenBy string, err error)
}

// Options configure a Server. Store, Publisher and at least one secret are required.
type Options struct {
	Store     Store
	Publisher Publisher
	// Secrets are the accepted credentials. A request is authorized when its
	// Authorization header equals "Bearer <secret>" or the secret itself (so a
	// full "Basic …" value configured in Okta works too), compared in constant time.
	Secrets []string
	// BaseURL is the external URL of the SCIM root ("https://jml.example.com/scim/v2"),
	// used for Location and meta.location (JML_PUBLIC_URL + "/scim/v2"). Default:
	// the root-relative "/scim/v2": never the request's Host, which the client
	// chooses.
	BaseURL string
	// MeterProvider counts pushes in jml_events_received_total (source "scim")
	// like the receiver does for webhooks; nil means the global one.
	MeterProvider metric.MeterProvider
	// Source names the events' source (default "scim").
	Source string
	// InactiveType is the event type published when a user becomes inactive
	// (active=false): events.Suspend (default) or events.Leaver. DELETE is always a leaver.
	InactiveType events.Type
	// MaxBody limits request bodies (default 1 MiB).
	MaxBody int64
	// Timeout bounds the store and publish work of one request (default 10 s).
	Timeout time.Duration
	// MaxResults caps count in list responses (default 200).
	MaxResults int
	Logger     *slog.Logger
	Now        func() time.Time
	// NewID returns the id of a created resource (default: random UUID).
	NewID func() string
}

// Server is the inbound SCIM 2.0 service provider, an http.Handler for the
// paths under /scim/v2/.
type Server struct {
	o        Options
	mux      *http.ServeMux
	secrets  [][32]byte
	received metric.Int64Counter
}

// Prefix is the path the Server answers under.
const Prefix = "/scim/v2"

// New returns a Server.
func New(o Options) (*Server, error) {
	if o.Store == nil {
		return nil, errors.New("scimserver: Store is required")
	}
	if o.Publisher == nil {
		return nil, errors.New("scimserver: Publisher is required")
	}
	s := &Server{mux: http.NewServeMux()}
	for _, sec := range o.Secrets {
		sec = strings.TrimSpace(sec)
		if sec == "" {
			continue
		}
		s.secrets = append(s.secrets, sha256.Sum256([]byte(normAuth(sec))))
		if !hasScheme(sec) {
			s.secrets = append(s.secrets, sha256.Sum256([]byte("Bearer "+sec)))
		}
	}
	if len(s.secrets) == 0 {
		return nil, errors.New("scimserver: at least one secret is required")
	}
	if o.Source == "" {
		o.Source = "scim"
	}
	switch o.InactiveType {
	case "":
		o.InactiveType = events.Suspend
	case events.Suspend, events.Leaver:
	default:
		return nil, fmt.Errorf("scimserver: InactiveType must be suspend or leaver, not %q", o.InactiveType)
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxResults <= 0 {
		o.MaxResults = 200
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NewID == nil {
		o.NewID = newUUID
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	var err error
	if s.received, err = mp.Meter("github.com/sentry-jml/sentry-jml/internal/handlers/scimserver").Int64Counter("jml_events_received",
		metric.WithDescription("Webhook events by source, type and outcome (accepted, duplicate, unauthorized, invalid, too_large, unavailable)")); err != nil {
		return nil, fmt.Errorf("scimserver: %w", err)
	}
	s.o = o
	s.routes()
	return s, nil
}

// normAuth trims an Authorization value and normalises the case of a Bearer
// scheme ("bearer x" → "Bearer x"), which RFC 6750 makes case-insensitive.
func normAuth(v string) string {
	v = strings.TrimSpace(v)
	if scheme, rest, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "bearer") {
		return "Bearer " + strings.TrimSpace(rest)
	}
	return v
}

func hasScheme(sec string) bool {
	scheme, _, ok := strings.Cut(sec, " ")
	if !ok {
		return false
	}
	switch strings.ToLower(scheme) {
	case "bearer", "basic", "ssws", "token":
		return true
	}
	return false
}

func (s *Server) routes() {
	h := func(pattern string, fn func(http.ResponseWriter, *http.Request) error) {
		s.mux.Handle(pattern, s.wrap(fn))
	}
	h("GET "+Prefix+"/Users", s.listUsers)
	h("POST "+Prefix+"/Users", s.createUser)
	h("GET "+Prefix+"/Users/{id}", s.getUser)
	h("PUT "+Prefix+"/Users/{id}", s.replaceUser)
	h("PATCH "+Prefix+"/Users/{id}", s.patchUser)
	h("DELETE "+Prefix+"/Users/{id}", s.deleteUser)
	h("GET "+Prefix+"/Groups", s.listGroups)
	h("POST "+Prefix+"/Groups", s.createGroup)
	h("GET "+Prefix+"/Groups/{id}", s.getGroup)
	h("PUT "+Prefix+"/Groups/{id}", s.replaceGroup)
	h("PATCH "+Prefix+"/Groups/{id}", s.patchGroup)
	h("DELETE "+Prefix+"/Groups/{id}", s.deleteGroup)
	h("GET "+Prefix+"/ServiceProviderConfig", s.serviceProviderConfig)
	h("GET "+Prefix+"/ResourceTypes", s.resourceTypes)
	h("GET "+Prefix+"/ResourceTypes/{name}", s.resourceType)
	h("GET "+Prefix+"/Schemas", s.schemas)
	h("GET "+Prefix+"/Schemas/{urn}", s.schema)
	h(Prefix+"/", func(http.ResponseWriter, *http.Request) error {
		return &scimError{Status: http.StatusNotFound, Detail: "no such endpoint"}
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// wrap authenticates, bounds the work and turns errors into SCIM error bodies.
func (s *Server) wrap(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r.Header.Get("Authorization")) {
			s.count(r.Context(), "", "unauthorized")
			s.o.Logger.WarnContext(r.Context(), "scim request refused", "reason", "bad or missing credentials", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="sentry-jml"`)
			writeError(w, &scimError{Status: http.StatusUnauthorized, Detail: "unauthorized"})
			return
		}
		// Ids in paths become KV keys: bounded like every other id.
		for _, name := range []string{"id", "name", "urn"} {
			if err := events.CheckID(name, r.PathValue(name)); err != nil {
				s.count(r.Context(), "", "invalid")
				writeError(w, limit(err).(*scimError))
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.o.Timeout)
		defer cancel()
		r = r.WithContext(ctx)
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.o.MaxBody)
		}
		err := fn(w, r)
		if err == nil {
			return
		}
		var se *scimError
		if errors.As(err, &se) {
			switch se.Status {
			case http.StatusBadRequest:
				s.count(ctx, "", "invalid")
			case http.StatusRequestEntityTooLarge:
				s.count(ctx, "", "too_large")
			}
			if se.Status >= 500 {
				s.o.Logger.ErrorContext(ctx, "scim request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			} else {
				s.o.Logger.InfoContext(ctx, "scim request rejected", "method", r.Method, "path", r.URL.Path, "status", se.Status, "detail", se.Detail)
			}
			writeError(w, se)
			return
		}
		if !strings.Contains(err.Error(), "publish ") {
			s.count(ctx, "", "unavailable") // a failed publish was counted with its type
		}
		s.o.Logger.ErrorContext(ctx, "scim store or publish unavailable; answering 503 so the client retries",
			"method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, &scimError{Status: http.StatusServiceUnavailable, Detail: "service unavailable, retry later"})
	})
}

// authorized compares the header with every secret in constant time.
func (s *Server) authorized(header string) bool {
	header = normAuth(header)
	if header == "" {
		return false
	}
	got := sha256.Sum256([]byte(header))
	ok := 0
	for _, want := range s.secrets {
		ok |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	return ok == 1
}

// readBody reads the request body (413 over the limit).
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, badRequest("invalidSyntax", "a JSON body is required")
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &scimError{Status: http.StatusRequestEntityTooLarge, Detail: "body exceeds the limit of " + strconv.FormatInt(mbe.Limit, 10) + " bytes"}
		}
		return nil, badRequest("invalidSyntax", "could not read the body")
	}
	return b, nil
}

// decodeObject decodes a body that must be one JSON object.
func decodeObject(body []byte) (map[string]any, error) {
	var m map[string]any
	if err := decodeStrict(body, &m); err != nil {
		var se *scimError
		if errors.As(err, &se) {
			return nil, se
		}
		return nil, badRequest("invalidSyntax", "body must be a JSON object")
	}
	if m == nil {
		return nil, badRequest("invalidSyntax", "body must be a JSON object")
	}
	return m, nil
}

// baseURL is the external URL of the SCIM root: Options.BaseURL, else the
// root-relative Prefix (never the request's Host header).
func (s *Server) baseURL(*http.Request) string {
	if s.o.BaseURL != "" {
		return s.o.BaseURL
	}
	return Prefix
}

// count adds one to jml_events_received_total{source="scim"}.
func (s *Server) count(ctx context.Context, typ, outcome string) {
	s.received.Add(ctx, 1, metric.WithAttributes(attribute.String("source", s.o.Source), attribute.String("type", typ), attribute.String("outcome", outcome)))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/scim+json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

type errorBody struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	SCIMType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, se *scimError) {
	writeJSON(w, se.Status, errorBody{Schemas: []string{SchemaError}, Status: strconv.Itoa(se.Status), SCIMType: se.SCIMType, Detail: se.Detail})
}

// listParams are startIndex and count (RFC 7644 §3.4.2.4), 1-based.
func (s *Server) listParams(r *http.Request) (start, count int, err error) {
	q := r.URL.Query()
	start, count = 1, s.o.MaxResults
	if v := q.Get("startIndex"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, 0, badRequest("invalidValue", "startIndex must be an integer")
		}
		if n > 1 {
			start = n
		}
	}
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, 0, badRequest("invalidValue", "count must be an integer")
		}
		count = max(0, min(n, s.o.MaxResults))
	}
	return start, count, nil
}

type listResponse struct {
	Schemas      []string         `json:"schemas"`
	TotalResults int              `json:"totalResults"`
	StartIndex   int              `json:"startIndex"`
	ItemsPerPage int              `json:"itemsPerPage"`
	Resources    []map[string]any `json:"Resources"`
}

func page(all []map[string]any, start, count int) listResponse {
	out := listResponse{Schemas: []string{SchemaListResponse}, TotalResults: len(all), StartIndex: start, Resources: []map[string]any{}}
	if start-1 < len(all) {
		end := min(len(all), start-1+count)
		out.Resources = all[start-1 : end]
	}
	out.ItemsPerPage = len(out.Resources)
	return out
}

// projection applies attributes / excludedAttributes (top-level names only;
// id, schemas and meta are always returned).
func projection(r *http.Request, res map[string]any) map[string]any {
	q := r.URL.Query()
	if attrs := q.Get("attributes"); attrs != "" {
		keep := map[string]bool{"id": true, "schemas": true, "meta": true}
		for _, a := range strings.Split(attrs, ",") {
			a = strings.TrimSpace(a)
			if i := strings.LastIndexByte(a, ':'); i >= 0 && strings.HasPrefix(strings.ToLower(a), "urn:") {
				if strings.EqualFold(a[:i], SchemaUser) || strings.EqualFold(a[:i], SchemaGroup) {
					a = a[i+1:]
				}
			}
			a, _, _ = strings.Cut(a, ".")
			keep[strings.ToLower(a)] = true
		}
		for k := range res {
			if !keep[strings.ToLower(k)] {
				delete(res, k)
			}
		}
	}
	if ex := q.Get("excludedAttributes"); ex != "" {
		for _, a := range strings.Split(ex, ",") {
			a = strings.TrimSpace(a)
			switch strings.ToLower(a) {
			case "id", "schemas", "meta":
				continue
			}
			delete(res, keyOf(res, a))
		}
	}
	return res
}
