package sources

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// BambooHRTolerance bounds how far X-BambooHR-Timestamp may be from now, both
// ways. BambooHR does not document one; Nango's integration uses 5 minutes, and
// retries (5 to 80 minutes later) are new deliveries with a new timestamp as far
// as third-party code shows. A replay inside the window is harmless: the event id
// is the body hash, so JetStream drops it.
const BambooHRTolerance = 5 * time.Minute

// BambooHR verifies X-BambooHR-Signature (lowercase hex HMAC-SHA256 of the raw
// body followed by the X-BambooHR-Timestamp value, keyed with the webhook's
// private key) and parses both payload styles: event-based JSON
// (employee.created|updated|deleted) and field-based ("global") JSON or form
// bodies with an employees list. Payloads carry no event id: the id is the sha256
// of the body (with "/<n>" per employee when one body holds several).
type BambooHR struct {
	mac       *signature.HMAC
	tolerance time.Duration
	log       *slog.Logger
}

var _ Source = (*BambooHR)(nil)

// NewBambooHR returns the BambooHR source. cfg.Secrets are the webhooks' private
// keys (one per webhook, several during rotation).
func NewBambooHR(cfg Config) (*BambooHR, error) {
	mac, err := signature.NewHMAC(sha256.New, signature.Hex, cfg.Secrets)
	if err != nil {
		return nil, fmt.Errorf("bamboohr source: %w", err)
	}
	b := &BambooHR{mac: mac, tolerance: BambooHRTolerance, log: loggerOf(cfg)}
	if msg := BambooHRWithoutAPI(cfg.APIURL, cfg.APIToken); msg != "" {
		b.log.Warn(msg, "source", "bamboohr")
	}
	return b, nil
}

// BambooHRWithoutAPI is the warning, said at start and by `jml doctor`, when
// BambooHR is enabled without API access ("" when it has it): its webhooks
// carry no employment status, so a new hire cannot be known to be active.
func BambooHRWithoutAPI(apiURL, apiToken string) string {
	if apiURL != "" || apiToken != "" {
		return ""
	}
	return "bamboohr joiners cannot be provisioned: BambooHR webhooks carry no employment status and no API is configured to re-read it, " +
		"so new hires are listed by `jml unresolved`, never invited; set JML_SOURCE_BAMBOOHR_API_URL and _API_TOKEN (on the worker)"
}

// Name implements Source.
func (b *BambooHR) Name() string { return "bamboohr" }

// Parse implements Source.
func (b *BambooHR) Parse(r *http.Request, body []byte, now time.Time) (Parsed, error) {
	ts := strings.TrimSpace(r.Header.Get("X-BambooHR-Timestamp"))
	if ts == "" {
		return Parsed{}, fmt.Errorf("%w: missing X-BambooHR-Timestamp", ErrUnauthorized)
	}
	if err := b.mac.Verify(r.Header.Get("X-BambooHR-Signature"), body, []byte(ts)); err != nil {
		return Parsed{}, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	sent, ok := parseTime(ts)
	if !ok {
		return Parsed{}, fmt.Errorf("%w: unparseable X-BambooHR-Timestamp", ErrUnauthorized)
	}
	if d := now.Sub(sent); d > b.tolerance || -d > b.tolerance {
		return Parsed{}, fmt.Errorf("%w: X-BambooHR-Timestamp outside the %s tolerance", ErrUnauthorized, b.tolerance)
	}
	items, err := parseBambooBody(r.Header.Get("Content-Type"), body)
	if err != nil {
		return Parsed{}, err
	}
	base := bodyID(body)
	var out Parsed
	for i, it := range items {
		typ, status, ok := it.classify()
		if !ok {
			out.Ignored++
			continue
		}
		p := it.person()
		occurred := sent
		if t, ok := parseTime(it.timestamp); ok {
			occurred = t
		}
		ev, err := newEvent(b.Name(), itemID(base, i, len(items)), typ, status, occurred, now, p)
		if err != nil {
			return Parsed{}, err
		}
		out.Events = append(out.Events, ev)
	}
	return out, nil
}

// bambooItem is one employee change, from either payload style.
type bambooItem struct {
	kind      string // created, updated, deleted, or the unknown name as sent
	id        string
	timestamp string
	changed   []string
	fields    map[string]string // normalized field name -> value
}

type bambooWire struct {
	Type      *string `json:"type"`
	Timestamp string  `json:"timestamp"`
	Data      *struct {
		CompanyID     flexID                     `json:"companyId"`
		EmployeeID    flexID                     `json:"employeeId"`
		ChangedFields []string                   `json:"changedFields"`
		Fields        map[string]json.RawMessage `json:"fields"`
	} `json:"data"`
	Employees *[]struct {
		Action        string                     `json:"action"`
		ChangedFields []string                   `json:"changedFields"`
		Fields        map[string]json.RawMessage `json:"fields"`
		ID            flexID                     `json:"id"`
		Timestamp     string                     `json:"timestamp"`
	} `json:"employees"`
}

func parseBambooBody(contentType string, body []byte) ([]bambooItem, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return parseBambooJSON(trimmed)
	}
	if strings.Contains(strings.ToLower(contentType), "json") {
		return nil, invalidf("body must be a JSON object")
	}
	return parseBambooForm(trimmed)
}

func parseBambooJSON(body []byte) ([]bambooItem, error) {
	var w bambooWire
	if err := decodeObject(body, &w); err != nil {
		return nil, err
	}
	switch {
	case w.Type != nil:
		it := bambooItem{kind: bambooKind(*w.Type), timestamp: w.Timestamp}
		if w.Data != nil {
			it.id = string(w.Data.EmployeeID)
			it.changed = w.Data.ChangedFields
			it.fields = normFields(w.Data.Fields)
		}
		return []bambooItem{it}, nil
	case w.Employees != nil:
		items := make([]bambooItem, 0, len(*w.Employees))
		for _, e := range *w.Employees {
			items = append(items, bambooItem{kind: bambooKind(e.Action), id: string(e.ID), timestamp: e.Timestamp,
				changed: e.ChangedFields, fields: normFields(e.Fields)})
		}
		return items, nil
	}
	return nil, invalidf("neither an event-based (type, data) nor a field-based (employees) BambooHR payload")
}

// employees[<id>][action]=Updated&employees[<id>][changedFields][0]=First+name&employees[<id>][fields][First Name]=Bryony
var bambooFormKey = regexp.MustCompile(`^employees\[([^\[\]]+)\]\[([^\[\]]+)\](?:\[([^\[\]]*)\])?$`)

func parseBambooForm(body []byte) ([]bambooItem, error) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, invalidf("body is neither JSON nor form-encoded")
	}
	byID := map[string]*bambooItem{}
	type indexed struct {
		i int
		s string
	}
	changed := map[string][]indexed{}
	for k, vs := range vals {
		m := bambooFormKey.FindStringSubmatch(k)
		if m == nil || len(vs) == 0 {
			continue
		}
		id, attr, sub := m[1], m[2], m[3]
		it := byID[id]
		if it == nil {
			it = &bambooItem{id: id, fields: map[string]string{}}
			byID[id] = it
		}
		v := vs[0]
		switch attr {
		case "action":
			it.kind = bambooKind(v)
		case "timestamp":
			it.timestamp = v
		case "id":
			it.id = v
		case "changedFields":
			n, _ := strconv.Atoi(sub)
			changed[id] = append(changed[id], indexed{n, v})
		case "fields":
			it.fields[normField(sub)] = v
		}
	}
	if len(byID) == 0 {
		return nil, invalidf("form body has no employees[…] entries")
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	items := make([]bambooItem, 0, len(ids))
	for _, id := range ids {
		it := byID[id]
		cs := changed[id]
		sort.Slice(cs, func(a, b int) bool { return cs[a].i < cs[b].i })
		for _, c := range cs {
			it.changed = append(it.changed, c.s)
		}
		items = append(items, *it)
	}
	return items, nil
}

func bambooKind(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "employee.created", "employee_with_fields.created", "created":
		return "created"
	case "employee.updated", "employee.update", "employee_with_fields.updated", "updated":
		return "updated"
	case "employee.deleted", "employee_with_fields.deleted", "deleted":
		return "deleted"
	}
	return s
}

// Field names arrive as API aliases (workEmail) or display names (Work Email);
// both normalize to "workemail".
func normField(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r != ' ' && r != '_' && r != '-' && r != '.' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func normFields(in map[string]json.RawMessage) map[string]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, raw := range in {
		out[normField(k)] = scalar(raw)
	}
	return out
}

// scalar reads a field value that is a string, a number, a bool or {"value": …}.
func scalar(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var wrapped struct {
		Value json.RawMessage `json:"value"`
	}
	if json.Unmarshal(raw, &wrapped) == nil && len(wrapped.Value) > 0 && !bytes.HasPrefix(bytes.TrimSpace(wrapped.Value), []byte("{")) {
		return scalar(wrapped.Value)
	}
	t := bytes.TrimSpace(raw)
	if len(t) > 0 && (t[0] == '-' || (t[0] >= '0' && t[0] <= '9') || t[0] == 't' || t[0] == 'f') {
		return string(t)
	}
	return ""
}

var (
	bambooStatusFields = []string{"status", "employmentstatus", "employmenthistorystatus", "terminationdate", "hiredate", "originalhiredate"}
	bambooMoverFields  = []string{"department", "division", "jobtitle", "supervisor", "supervisoreid", "reportingto", "location"}
)

func (it bambooItem) changedAny(names []string) bool {
	for _, c := range it.changed {
		n := normField(c)
		for _, want := range names {
			if n == want {
				return true
			}
		}
	}
	return false
}

// classify maps the item to our type. BambooHR has no hire or termination
// events: a status value in the payload decides; a status change without the
// value (event-based payloads are thin) is an update the worker re-reads.
func (it bambooItem) classify() (events.Type, events.Status, bool) {
	switch it.kind {
	case "created":
		return events.Joiner, "", true
	case "deleted":
		return events.Leaver, events.Terminated, true
	case "updated":
	default:
		return "", "", false
	}
	status := strings.ToLower(it.fields["status"])
	hist := strings.ToLower(it.fields["employmentstatus"] + it.fields["employmenthistorystatus"])
	statusChanged := it.changedAny(bambooStatusFields)
	switch {
	case status == "inactive" || strings.Contains(hist, "terminated"):
		return events.Leaver, events.Terminated, true
	case status == "active" && statusChanged:
		return events.Rehire, events.Active, true
	case statusChanged:
		return events.Update, "", true
	case it.changedAny(bambooMoverFields):
		return events.Mover, "", true
	}
	return events.Update, "", true
}

func (it bambooItem) person() events.Person {
	f := it.fields
	p := events.Person{ID: strings.TrimSpace(it.id), Email: f["workemail"], Department: f["department"], Title: f["jobtitle"]}
	switch {
	case f["displayname"] != "":
		p.Name = f["displayname"]
	case f["firstname"] != "" || f["lastname"] != "":
		p.Name = strings.TrimSpace(f["firstname"] + " " + f["lastname"])
	}
	if len(it.changed) > 0 {
		p.Attributes = map[string]string{"changed_fields": truncateList(it.changed)}
	}
	return p
}

// ---- Helpers shared by the HR sources (bamboohr, hibob, gusto, personio, deel,
// rippling). They live in this file because the change that added these sources
// owned only the per-provider files.

func loggerOf(cfg Config) *slog.Logger {
	if cfg.Logger != nil {
		return cfg.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", events.ErrInvalid, fmt.Sprintf(format, args...))
}

// bodyID is the event id of a provider that gives none: the raw body's sha256.
func bodyID(body []byte) string {
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// itemID gives each of n events from one body its own stable id.
func itemID(base string, i, n int) string {
	if n <= 1 {
		return base
	}
	return base + "/" + strconv.Itoa(i)
}

// decodeObject decodes exactly one JSON object into v, with a reason on failure.
func decodeObject(body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return invalidf("body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return invalidf("malformed JSON: syntax error at byte %d", se.Offset)
		case errors.As(err, &te):
			return invalidf("malformed JSON: field %s has the wrong type", te.Field)
		}
		return invalidf("malformed JSON")
	}
	if dec.More() {
		return invalidf("body must be exactly one JSON object")
	}
	if _, err := dec.Token(); err == nil {
		return invalidf("trailing data after the JSON object")
	}
	return nil
}

// flexID is an id that providers send as a string or as a number; numbers are
// kept verbatim (HiBob's 19-digit ids do not fit a float64).
type flexID string

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexID(strings.TrimSpace(s))
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		*f = flexID(n.String())
	default:
		return errors.New("id must be a string or a number")
	}
	return nil
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

// parseTime reads the timestamps providers send: RFC 3339, ISO 8601 with a
// +0000 offset or none (taken as UTC), or Unix seconds or milliseconds.
func parseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		switch {
		case n < 0:
			return time.Time{}, false
		case n >= 1e12 && n < 1e14: // milliseconds
			return time.UnixMilli(n).UTC(), true
		case n < 1e11:
			return time.Unix(n, 0).UTC(), true
		}
		return time.Time{}, false
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if t.Year() < 1970 || t.Year() > 9999 {
				return time.Time{}, false
			}
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// cleanEmail returns s when it is one bare address, else "".
func cleanEmail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 254 {
		return ""
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return ""
	}
	return s
}

func truncateList(ss []string) string {
	out := strings.Join(ss, ",")
	if len(out) > 512 {
		out = out[:512]
	}
	return out
}

// newEvent builds and checks one provider event. The person must have an id or a
// valid email; a malformed email is dropped when there is an id, but an email
// over events.MaxEmailLen or with control characters is refused, like an id
// over events.MaxIDLen. A long or odd event id is replaced by its hash.
func newEvent(source, id string, typ events.Type, status events.Status, occurred, now time.Time, p events.Person) (events.Event, error) {
	p.ID = strings.TrimSpace(p.ID)
	p.Status = status
	if raw := strings.TrimSpace(p.Email); len(raw) > events.MaxEmailLen {
		return events.Event{}, invalidf("employee email longer than %d characters", events.MaxEmailLen)
	} else if err := events.CheckText("employee email", raw); err != nil {
		return events.Event{}, err
	}
	p.Email = cleanEmail(p.Email)
	if p.ID == "" && p.Email == "" {
		return events.Event{}, invalidf("%s event without an employee id or email", typ)
	}
	if err := events.CheckID("employee id", p.ID); err != nil {
		return events.Event{}, err
	}
	if err := events.CheckPerson(p); err != nil {
		return events.Event{}, err
	}
	if occurred.IsZero() {
		occurred = now
	}
	return events.Event{
		ID:         events.SafeID(id),
		Source:     source,
		Type:       typ,
		OccurredAt: occurred.UTC(),
		ReceivedAt: now.UTC(),
		Person:     p,
	}, nil
}
