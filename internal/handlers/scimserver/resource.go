package scimserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sentry-jml/sentry-jml/internal/events"
)

// Store kinds.
const (
	kindUsers  = "Users"
	kindGroups = "Groups"
)

// record is what the store holds for one resource.
type record struct {
	ID string `json:"id"`
	// Resource holds the client's attributes (never id, meta, password, or a
	// User's groups, which are derived from Group membership).
	Resource     map[string]any `json:"resource"`
	Version      int64          `json:"version"`
	Created      time.Time      `json:"created"`
	LastModified time.Time      `json:"lastModified"`
	// Users: the groups the user is a member of, kept in step with the Groups.
	Groups []groupRef `json:"groups,omitempty"`
	// Users: the events of the last change. They are published again when a
	// request changes nothing (a retry after a failed publish), and JetStream's
	// Nats-Msg-Id dedupe drops the copies that did get through.
	LastEvents []events.Event `json:"lastEvents,omitempty"`
	// Groups: the users whose group lists the last change affected, synced
	// again when a request changes nothing (a retry after a crash).
	Touched []string `json:"touched,omitempty"`
}

type groupRef struct {
	Value   string `json:"value"`
	Display string `json:"display,omitempty"`
}

func decodeRecord(b []byte) (*record, error) {
	var rec record
	if err := decodeStrict(b, &rec); err != nil {
		return nil, err
	}
	if rec.Resource == nil {
		rec.Resource = map[string]any{}
	}
	return &rec, nil
}

func (rec *record) encode() []byte {
	b, err := json.Marshal(rec)
	if err != nil {
		// Resource holds only values decoded from JSON: cannot fail.
		panic("scimserver: encode record: " + err.Error())
	}
	return b
}

func newUUID() string { return uuid.NewString() }

// etag is the weak entity tag of a version (RFC 7644 §3.14).
func etag(v int64) string { return `W/"` + strconv.FormatInt(v, 10) + `"` }

// render returns the SCIM representation of a record.
func (rec *record) render(kind, base string) map[string]any {
	out := make(map[string]any, len(rec.Resource)+4)
	for k, v := range rec.Resource {
		out[k] = v
	}
	core := SchemaUser
	resourceType := "User"
	if kind == kindGroups {
		core, resourceType = SchemaGroup, "Group"
	}
	schemas := []any{core}
	for k := range rec.Resource {
		if strings.HasPrefix(strings.ToLower(k), "urn:") {
			schemas = append(schemas, k)
		}
	}
	out["schemas"] = schemas
	out["id"] = rec.ID
	if kind == kindUsers {
		groups := make([]any, 0, len(rec.Groups))
		for _, g := range rec.Groups {
			groups = append(groups, map[string]any{"value": g.Value, "display": g.Display, "$ref": base + "/Groups/" + g.Value})
		}
		out["groups"] = groups
		if _, ok := out[keyOf(out, "active")]; !ok {
			out["active"] = true
		}
	} else if members, ok := out[keyOf(out, "members")].([]any); ok {
		withRef := make([]any, 0, len(members))
		for _, m := range members {
			if mm, ok := m.(map[string]any); ok {
				c := cloneMap(mm)
				if v, ok := c["value"].(string); ok {
					c["$ref"] = base + "/Users/" + v
				}
				withRef = append(withRef, c)
			}
		}
		out[keyOf(out, "members")] = withRef
	}
	out["meta"] = map[string]any{
		"resourceType": resourceType,
		"created":      rec.Created.UTC().Format(time.RFC3339Nano),
		"lastModified": rec.LastModified.UTC().Format(time.RFC3339Nano),
		"location":     base + "/" + kind + "/" + rec.ID,
		"version":      etag(rec.Version),
	}
	return out
}

// cleanResource removes what a client may not set and checks the attributes the
// server relies on. kind decides which attributes are read-only.
func cleanResource(kind string, m map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch strings.ToLower(k) {
		case "id", "meta", "schemas", "password":
			continue
		case "groups":
			if kind == kindUsers {
				continue
			}
		}
		out[k] = v
	}
	if kind == kindUsers {
		if err := normalizeActive(out); err != nil {
			return nil, err
		}
		if name, _ := out[keyOf(out, "userName")].(string); strings.TrimSpace(name) == "" {
			return nil, badRequest("invalidValue", "userName is required")
		}
		if err := checkUser(out); err != nil {
			return nil, err
		}
		return out, nil
	}
	if name, _ := out[keyOf(out, "displayName")].(string); strings.TrimSpace(name) == "" {
		return nil, badRequest("invalidValue", "displayName is required")
	}
	if err := limit(events.CheckID("displayName", displayName(out))); err != nil {
		return nil, err
	}
	members, err := normalizeMembers(out[keyOf(out, "members")])
	if err != nil {
		return nil, err
	}
	delete(out, keyOf(out, "members"))
	out["members"] = members
	return out, nil
}

// normalizeActive turns Entra's "True"/"False" strings into booleans.
func normalizeActive(m map[string]any) error {
	k := keyOf(m, "active")
	v, ok := m[k]
	if !ok {
		return nil
	}
	switch x := v.(type) {
	case bool:
	case nil:
		delete(m, k)
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(x))
		if err != nil {
			return badRequest("invalidValue", "active must be a boolean, not %q", truncate(x))
		}
		m[k] = b
	default:
		return badRequest("invalidValue", "active must be a boolean")
	}
	if k != "active" {
		m["active"] = m[k]
		delete(m, k)
	}
	return nil
}

// normalizeMembers keeps each member's value (the user id), display and type,
// once per value.
func normalizeMembers(v any) ([]any, error) {
	out := []any{}
	if v == nil {
		return out, nil
	}
	arr, ok := v.([]any)
	if !ok {
		arr = []any{v}
	}
	seen := map[string]bool{}
	for _, el := range arr {
		m, ok := el.(map[string]any)
		if !ok {
			return nil, badRequest("invalidValue", "members must be objects with a value")
		}
		val, _ := m[keyOf(m, "value")].(string)
		if val == "" {
			return nil, badRequest("invalidValue", "each member needs a value (the user id)")
		}
		if err := limit(events.CheckID("members.value", val)); err != nil {
			return nil, err
		}
		if seen[val] {
			continue
		}
		seen[val] = true
		nm := map[string]any{"value": val}
		if d, ok := m[keyOf(m, "display")].(string); ok && d != "" {
			nm["display"] = d
		}
		if t, ok := m[keyOf(m, "type")].(string); ok && t != "" {
			nm["type"] = t
		}
		out = append(out, nm)
	}
	return out, nil
}

func memberIDs(res map[string]any) []string {
	arr, _ := res[keyOf(res, "members")].([]any)
	ids := make([]string, 0, len(arr))
	for _, el := range arr {
		if m, ok := el.(map[string]any); ok {
			if v, ok := m["value"].(string); ok {
				ids = append(ids, v)
			}
		}
	}
	return ids
}

func str(m map[string]any, name string) string {
	s, _ := m[keyOf(m, name)].(string)
	return s
}

func userName(res map[string]any) string { return strings.TrimSpace(str(res, "userName")) }

func displayName(res map[string]any) string { return strings.TrimSpace(str(res, "displayName")) }

// isActive is the user's active flag (absent means active, as both Okta and
// Entra send it on create).
func isActive(res map[string]any) bool {
	b, ok := res[keyOf(res, "active")].(bool)
	return !ok || b
}

func sameResource(a, b map[string]any) bool { return reflect.DeepEqual(a, b) }

// person projects a user onto the directory's Person. SCIM clients are IdPs: not
// the HR id authority (ID stays empty) and not authoritative for department or
// title, which go to attributes prefixed "scim." next to the SCIM ids.
func person(rec *record) events.Person {
	res := rec.Resource
	p := events.Person{Email: primaryEmail(res), Name: fullName(res)}
	attrs := map[string]string{"scim_id": rec.ID, "scim.userName": userName(res), "scim.active": strconv.FormatBool(isActive(res))}
	set := func(k, v string) {
		if v = strings.TrimSpace(v); v != "" {
			attrs[k] = v
		}
	}
	set("scim.externalId", str(res, "externalId"))
	set("scim.title", str(res, "title"))
	if ent, ok := res[keyOf(res, SchemaEnterpriseUser)].(map[string]any); ok {
		set("scim.department", str(ent, "department"))
		set("scim.employeeNumber", str(ent, "employeeNumber"))
		set("scim.division", str(ent, "division"))
		set("scim.organization", str(ent, "organization"))
		set("scim.costCenter", str(ent, "costCenter"))
		switch m := ent[keyOf(ent, "manager")].(type) {
		case map[string]any:
			set("scim.manager", str(m, "value"))
		case string:
			set("scim.manager", m)
		}
	}
	p.Attributes = attrs
	groups := make([]string, 0, len(rec.Groups))
	for _, g := range rec.Groups {
		if g.Display != "" {
			groups = append(groups, g.Display)
		} else {
			groups = append(groups, g.Value)
		}
	}
	slices.Sort(groups)
	p.Groups = slices.Compact(groups)
	return p
}

// primaryEmail is the primary email, else the work email, else the first, else
// userName when it is an address.
func primaryEmail(res map[string]any) string {
	arr, _ := res[keyOf(res, "emails")].([]any)
	var primary, work, first string
	for _, el := range arr {
		m, ok := el.(map[string]any)
		if !ok {
			continue
		}
		v := strings.TrimSpace(str(m, "value"))
		if !isEmail(v) {
			continue
		}
		if first == "" {
			first = v
		}
		if b, _ := m[keyOf(m, "primary")].(bool); b && primary == "" {
			primary = v
		}
		if strings.EqualFold(str(m, "type"), "work") && work == "" {
			work = v
		}
	}
	for _, v := range []string{primary, work, first} {
		if v != "" {
			return v
		}
	}
	if u := userName(res); isEmail(u) {
		return u
	}
	return ""
}

func isEmail(s string) bool { return s != "" && events.CheckEmail("", s) == nil }

// limit turns an events limit error into a SCIM 400 invalidValue.
func limit(err error) error {
	if err == nil {
		return nil
	}
	return badRequest("invalidValue", "%s", strings.TrimPrefix(err.Error(), events.ErrInvalid.Error()+": "))
}

// checkUser applies the entry-point limits to a user: userName and externalId
// are ids (at most events.MaxIDLen, no control characters), every email value
// at most events.MaxEmailLen, and what the user projects to (the person an
// event carries) passes events.CheckPerson.
func checkUser(res map[string]any) error {
	if err := limit(events.CheckID("userName", userName(res))); err != nil {
		return err
	}
	if err := limit(events.CheckID("externalId", strings.TrimSpace(str(res, "externalId")))); err != nil {
		return err
	}
	arr, _ := res[keyOf(res, "emails")].([]any)
	for _, el := range arr {
		if m, ok := el.(map[string]any); ok {
			v := strings.TrimSpace(str(m, "value"))
			if len(v) > events.MaxEmailLen {
				return badRequest("invalidValue", "emails.value is longer than %d characters", events.MaxEmailLen)
			}
			if err := limit(events.CheckText("emails.value", v)); err != nil {
				return err
			}
		}
	}
	return limit(events.CheckPerson(person(&record{ID: "check", Resource: res})))
}

func fullName(res map[string]any) string {
	if d := strings.TrimSpace(str(res, "displayName")); d != "" {
		return d
	}
	n, ok := res[keyOf(res, "name")].(map[string]any)
	if !ok {
		return ""
	}
	if f := strings.TrimSpace(str(n, "formatted")); f != "" {
		return f
	}
	return strings.TrimSpace(strings.TrimSpace(str(n, "givenName")) + " " + strings.TrimSpace(str(n, "familyName")))
}

// eventID is deterministic in (resource id, version, operation), so a retried
// request that reaches the same version publishes the same Nats-Msg-Id.
func eventID(id string, version int64, op string) string {
	h := sha256.Sum256([]byte(id + "\x00" + strconv.FormatInt(version, 10) + "\x00" + op))
	return hex.EncodeToString(h[:20])
}

// newEvent builds the event for a user at its current version.
func (s *Server) newEvent(rec *record, t events.Type, op string, now time.Time) events.Event {
	p := person(rec)
	switch t {
	case events.Joiner, events.Rehire:
		p.Status = events.Active
	case events.Suspend:
		p.Status = events.Suspended
	case events.Leaver:
		p.Status = events.Terminated
	}
	return events.Event{
		ID: eventID(rec.ID, rec.Version, op), Source: s.o.Source, Type: t,
		OccurredAt: now.UTC(), ReceivedAt: now.UTC(), Person: p,
	}
}

// userEvents derives the lifecycle events of a change from old to rec (old nil:
// created). Changes that touch nothing the directory keeps publish nothing.
func (s *Server) userEvents(old, rec *record, now time.Time) []events.Event {
	inactive := s.o.InactiveType
	if old == nil {
		if isActive(rec.Resource) {
			return []events.Event{s.newEvent(rec, events.Joiner, "create", now)}
		}
		return []events.Event{s.newEvent(rec, inactive, "create", now)}
	}
	wasActive, active := isActive(old.Resource), isActive(rec.Resource)
	switch {
	case wasActive && !active:
		return []events.Event{s.newEvent(rec, inactive, "deactivate", now)}
	case !wasActive && active:
		return []events.Event{s.newEvent(rec, events.Rehire, "activate", now)}
	}
	before, after := person(old), person(rec)
	if reflect.DeepEqual(before, after) {
		return nil
	}
	op := "update"
	if !slices.Equal(before.Groups, after.Groups) {
		op = "groups"
	}
	return []events.Event{s.newEvent(rec, events.Update, op, now)}
}
