package bamboohr

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/sources"
	"github.com/sentry-jml/sentry-jml/internal/signature"
)

// Tolerance bounds how far X-BambooHR-Timestamp may be from now, both
// ways. BambooHR does not document one; Nango's integration uses 5 minutes, and
// retries (5 to 80 minutes later) are new deliveries with a new timestamp as far
// as third-party code shows. A replay inside the window is harmless: the event id
// is the body hash, so JetStream drops it.
const Tolerance = 5 * time.Minute

// Source verifies X-BambooHR-Signature (lowercase hex HMAC-SHA256 of the raw
// body followed by the X-BambooHR-Timestamp value, keyed with the webhook's
// private key) and parses both payload styles: event-based JSON
// (employee.created|updated|deleted) and field-based ("global") JSON or form
// bodies with an employees list. Payloads carry no event id: the id is the sha256
// of the body (with "/<n>" per employee when one body holds several).
type Source struct {
	mac       *signature.HMAC
	tolerance time.Duration
	log       *slog.Logger
}

var _ sources.Source = (*Source)(nil)

// NewSource returns the BambooHR source. cfg.Secrets are the webhooks' private
// keys (one per webhook, several during rotation).
func NewSource(cfg sources.Config) (*Source, error) {
	mac, err := signature.NewHMAC(sha256.New, signature.Hex, cfg.Secrets)
	if err != nil {
		return nil, fmt.Errorf("bamboohr source: %w", err)
	}
	b := &Source{mac: mac, tolerance: Tolerance, log: sources.LoggerOf(cfg)}
	if msg := WithoutAPI(cfg.APIURL, cfg.APIToken); msg != "" {
		b.log.Warn(msg, "source", "bamboohr")
	}
	return b, nil
}

// WithoutAPI is the warning, said at start and by `jml doctor`, when
// BambooHR is enabled without API access ("" when it has it): its webhooks
// carry no employment status, so a new hire cannot be known to be active.
func WithoutAPI(apiURL, apiToken string) string {
	if apiURL != "" || apiToken != "" {
		return ""
	}
	return "bamboohr joiners cannot be provisioned: BambooHR webhooks carry no employment status and no API is configured to re-read it, " +
		"so new hires are listed by `jml unresolved`, never invited; set JML_SOURCE_BAMBOOHR_API_URL and _API_TOKEN (on the worker)"
}

// Name implements sources.Source.
func (b *Source) Name() string { return "bamboohr" }

// Parse implements sources.Source.
func (b *Source) Parse(r *http.Request, body []byte, now time.Time) (sources.Parsed, error) {
	ts := strings.TrimSpace(r.Header.Get("X-BambooHR-Timestamp"))
	if ts == "" {
		return sources.Parsed{}, fmt.Errorf("%w: missing X-BambooHR-Timestamp", sources.ErrUnauthorized)
	}
	if err := b.mac.Verify(r.Header.Get("X-BambooHR-Signature"), body, []byte(ts)); err != nil {
		return sources.Parsed{}, fmt.Errorf("%w: %w", sources.ErrUnauthorized, err)
	}
	sent, ok := sources.ParseTime(ts)
	if !ok {
		return sources.Parsed{}, fmt.Errorf("%w: unparseable X-BambooHR-Timestamp", sources.ErrUnauthorized)
	}
	if d := now.Sub(sent); d > b.tolerance || -d > b.tolerance {
		return sources.Parsed{}, fmt.Errorf("%w: X-BambooHR-Timestamp outside the %s tolerance", sources.ErrUnauthorized, b.tolerance)
	}
	items, err := parseBambooBody(r.Header.Get("Content-Type"), body)
	if err != nil {
		return sources.Parsed{}, err
	}
	base := sources.BodyID(body)
	var out sources.Parsed
	for i, it := range items {
		typ, status, ok := it.classify()
		if !ok {
			out.Ignored++
			continue
		}
		p := it.person()
		occurred := sent
		if t, ok := sources.ParseTime(it.timestamp); ok {
			occurred = t
		}
		ev, err := sources.NewEvent(b.Name(), itemID(base, i, len(items)), typ, status, occurred, now, p)
		if err != nil {
			return sources.Parsed{}, err
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
		CompanyID     sources.FlexID             `json:"companyId"`
		EmployeeID    sources.FlexID             `json:"employeeId"`
		ChangedFields []string                   `json:"changedFields"`
		Fields        map[string]json.RawMessage `json:"fields"`
	} `json:"data"`
	Employees *[]struct {
		Action        string                     `json:"action"`
		ChangedFields []string                   `json:"changedFields"`
		Fields        map[string]json.RawMessage `json:"fields"`
		ID            sources.FlexID             `json:"id"`
		Timestamp     string                     `json:"timestamp"`
	} `json:"employees"`
}

func parseBambooBody(contentType string, body []byte) ([]bambooItem, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return parseBambooJSON(trimmed)
	}
	if strings.Contains(strings.ToLower(contentType), "json") {
		return nil, sources.Invalidf("body must be a JSON object")
	}
	return parseBambooForm(trimmed)
}

func parseBambooJSON(body []byte) ([]bambooItem, error) {
	var w bambooWire
	if err := sources.DecodeObject(body, &w); err != nil {
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
	return nil, sources.Invalidf("neither an event-based (type, data) nor a field-based (employees) BambooHR payload")
}

// employees[<id>][action]=Updated&employees[<id>][changedFields][0]=First+name&employees[<id>][fields][First Name]=Bryony
var bambooFormKey = regexp.MustCompile(`^employees\[([^\[\]]+)\]\[([^\[\]]+)\](?:\[([^\[\]]*)\])?$`)

func parseBambooForm(body []byte) ([]bambooItem, error) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, sources.Invalidf("body is neither JSON nor form-encoded")
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
		return nil, sources.Invalidf("form body has no employees[…] entries")
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
		p.Attributes = map[string]string{"changed_fields": sources.TruncateList(it.changed)}
	}
	return p
}

// itemID gives each of n events from one body its own stable id.
func itemID(base string, i, n int) string {
	if n <= 1 {
		return base
	}
	return base + "/" + strconv.Itoa(i)
}
