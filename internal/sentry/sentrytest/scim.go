package sentrytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

const (
	scimUserSchema  = "urn:ietf:params:scim:schemas:core:2.0:User"
	scimGroupSchema = "urn:ietf:params:scim:schemas:core:2.0:Group"
	scimListSchema  = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	scimPatchSchema = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
)

type scimEmail struct {
	Primary bool   `json:"primary"`
	Value   string `json:"value"`
	Type    string `json:"type"`
}

type scimName struct {
	GivenName  string `json:"givenName"`
	FamilyName string `json:"familyName"`
}

type scimMeta struct {
	ResourceType string `json:"resourceType"`
}

type scimUser struct {
	Schemas       []string    `json:"schemas"`
	ID            string      `json:"id"`
	UserName      string      `json:"userName"`
	Emails        []scimEmail `json:"emails"`
	Name          scimName    `json:"name"`
	Active        *bool       `json:"active,omitempty"`
	Meta          scimMeta    `json:"meta"`
	SentryOrgRole string      `json:"sentryOrgRole"`
}

type scimGroupMember struct {
	Value   string `json:"value"`
	Display string `json:"display"`
}

type scimGroup struct {
	Schemas     []string           `json:"schemas"`
	ID          string             `json:"id"`
	DisplayName string             `json:"displayName"`
	Members     *[]scimGroupMember `json:"members,omitempty"`
	Meta        scimMeta           `json:"meta"`
}

type scimList struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	StartIndex   int      `json:"startIndex"`
	ItemsPerPage int      `json:"itemsPerPage"`
	Resources    []any    `json:"Resources"`
}

func (s *Sandbox) scimUserOf(st *state, m *member) scimUser {
	u := scimUser{Schemas: []string{scimUserSchema}, ID: m.idStr(), UserName: m.Email(),
		Emails: []scimEmail{{Primary: true, Value: m.Email(), Type: "work"}},
		Name:   scimName{GivenName: "N/A", FamilyName: "N/A"}, Meta: scimMeta{ResourceType: "User"}, SentryOrgRole: m.role}
	if st.scimProvider != "azure" {
		t := true
		u.Active = &t
	}
	return u
}

func (s *Sandbox) scimGroupOf(t *team, withMembers bool) scimGroup {
	g := scimGroup{Schemas: []string{scimGroupSchema}, ID: t.idStr(), DisplayName: t.name, Meta: scimMeta{ResourceType: "Group"}}
	if withMembers {
		ms := make([]*member, 0, len(t.members))
		for m := range t.members {
			ms = append(ms, m)
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].id < ms[j].id })
		list := make([]scimGroupMember, 0, len(ms))
		for _, m := range ms {
			list = append(list, scimGroupMember{Value: m.idStr(), Display: m.Email()})
		}
		g.Members = &list
	}
	return g
}

// scimGate applies the endpoint scopes and the "SCIM enabled" requirement.
func (c *call) scimGate(st *state, scopes ...string) bool {
	if !c.need(scopes...) {
		return false
	}
	if !st.scimEnabled || !st.samlEnabled {
		c.detail(http.StatusForbidden, msgNoPermission)
		return false
	}
	return true
}

// filterOutcome is how Sentry's parse_filter_conditions ends.
type filterOutcome int

const (
	filterOK      filterOutcome = iota
	filterInvalid               // SCIMFilterError: 400 scimType invalidFilter
	filterCrash                 // int() on a non-number "value": an uncaught ValueError, 500
)

// parseSCIMFilter follows parse_filter_conditions in
// src/sentry/core/endpoints/scim/utils.py: exactly one `key eq value`
// clause, no comma anywhere, the value's first and last characters dropped
// whatever they are, keys userName, value (an integer) and displayName. The
// value may come back empty; Sentry then applies no filter at all.
func parseSCIMFilter(f string) (string, filterOutcome) {
	if strings.Contains(f, ",") {
		return "", filterInvalid
	}
	parts := strings.Split(f, " eq ")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", filterInvalid
	}
	key := strings.TrimSpace(parts[0])
	v := []rune(strings.TrimSpace(parts[1]))
	value := ""
	if len(v) >= 2 {
		value = string(v[1 : len(v)-1])
	}
	switch key {
	case "userName", "displayName":
		return value, filterOK
	case "value":
		n, err := strconv.ParseInt(strings.TrimPrefix(strings.TrimSpace(value), "+"), 10, 64)
		if err != nil {
			return "", filterCrash
		}
		if n == 0 {
			return "", filterOK // Python's 0 is falsy: no filter
		}
		return strconv.FormatInt(n, 10), filterOK
	}
	return "", filterInvalid
}

func invalidFilter(w http.ResponseWriter) {
	writeJSON(w, http.StatusBadRequest, map[string]any{"schemas": []string{scimErrorSchema}, "scimType": "invalidFilter"})
}

// internalError is Sentry's answer to an uncaught exception.
func internalError(w http.ResponseWriter) {
	writeJSON(w, http.StatusInternalServerError, map[string]string{"detail": "Internal Error", "errorId": "sandbox-scim"})
}

// scimQuery is SCIMQueryParamSerializer's result plus the page size the
// base endpoint's paginate settles on.
type scimQuery struct {
	start, limit int
	filter       string // "" = no filter
	excluded     []string
}

func (q scimQuery) excludes(attr string) bool {
	for _, a := range q.excluded {
		if a == attr {
			return true
		}
	}
	return false
}

// drfInt parses like DRF's IntegerField (surrounding spaces and a ".0"
// tail are accepted).
func drfInt(v string) (int, bool) {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '.'); i >= 0 && strings.Trim(v[i+1:], "0") == "" {
		v = v[:i]
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

// drfMin reads query parameter key as DRF's IntegerField(min_value=min) does:
// into *dst when present and valid, else its error message into errs.
func drfMin(qv url.Values, key string, min int, dst *int, errs map[string][]string) {
	vs, ok := qv[key]
	if !ok {
		return
	}
	n, ok := drfInt(vs[0])
	switch {
	case !ok:
		errs[key] = []string{"A valid integer is required."}
	case n < min:
		errs[key] = []string{fmt.Sprintf("Ensure this value is greater than or equal to %d.", min)}
	default:
		*dst = n
	}
}

// scimQueryParams validates the query string as SCIMEndpoint.get_query_parameters
// (src/sentry/core/endpoints/scim/utils.py) does, then pages as
// Endpoint.paginate (src/sentry/api/base.py) with default_per_page=count and
// GenericOffsetPaginator (src/sentry/api/paginator.py). A bad filter is the
// SCIM invalidFilter body; bad startIndex/count are DRF's plain field-error
// dict (ParseError(serializer.errors)), not SCIM bodies. It answers the
// request itself when it returns false.
func (c *call) scimQueryParams() (scimQuery, bool) {
	qv := c.r.URL.Query()
	q := scimQuery{start: 1, excluded: qv["excludedAttributes"]}
	count := 100
	errs := map[string][]string{}
	drfMin(qv, "startIndex", 1, &q.start, errs)
	drfMin(qv, "count", 0, &count, errs)
	if vs, ok := qv["filter"]; ok {
		if vs[0] == "" {
			invalidFilter(c.w) // CharField: "This field may not be blank."
			return q, false
		}
		v, out := parseSCIMFilter(vs[0])
		switch out {
		case filterInvalid:
			invalidFilter(c.w)
			return q, false
		case filterCrash:
			internalError(c.w)
			return q, false
		}
		q.filter = v
	}
	if len(errs) > 0 {
		c.json(http.StatusBadRequest, errs)
		return q, false
	}
	// paginate: per_page (if given) overrides count, capped at max(100, count).
	q.limit = count
	if v := qv.Get("per_page"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			c.detail(http.StatusBadRequest, "Invalid per_page parameter.")
			return q, false
		}
		if max := max(100, count); n > max {
			c.detail(http.StatusBadRequest, fmt.Sprintf("Invalid per_page value. Cannot exceed %d.", max))
			return q, false
		}
		q.limit = n
	}
	if q.limit <= 0 {
		// GenericOffsetPaginator.get_result asserts limit > 0: count=0 is a 500.
		internalError(c.w)
		return q, false
	}
	return q, true
}

func scimPage[T any](items []T, start, count int) []T {
	lo := start - 1
	if lo > len(items) {
		lo = len(items)
	}
	hi := lo + count
	if hi > len(items) {
		hi = len(items)
	}
	return items[lo:hi]
}

// ---- Users ----

func (s *Sandbox) scimListUsers(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.scimGate(st, "member:read", "member:write", "member:admin") {
		return
	}
	q, ok := c.scimQueryParams()
	if !ok {
		return
	}
	items := st.sortedSCIM()
	if q.filter != "" {
		// An invite's own email, or any email of a member's user (primary
		// or secondary, verified or not: user_service.get_many_by_email
		// with is_verified=False), case-insensitively.
		v := lower(q.filter)
		var out []*member
		for _, m := range items {
			if m.pending() {
				if lower(m.email) == v {
					out = append(out, m)
				}
				continue
			}
			if lower(m.user.email) == v || st.userByAlt[v] == m.user {
				out = append(out, m)
			}
		}
		items = out
	}
	pg := scimPage(items, q.start, q.limit)
	res := make([]any, 0, len(pg))
	for _, m := range pg {
		res = append(res, s.scimUserOf(st, m))
	}
	c.json(http.StatusOK, scimList{Schemas: []string{scimListSchema}, TotalResults: len(items), StartIndex: q.start,
		ItemsPerPage: len(res), Resources: res})
}

func (c *call) scimMember(st *state) *member {
	m := st.memberByIDStr(c.r.PathValue("member_id"))
	if m == nil {
		scimError(c.w, http.StatusNotFound, msgNotFound)
	}
	return m
}

func (s *Sandbox) scimGetUser(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.scimGate(st, "member:read", "member:write", "member:admin") {
		return
	}
	if m := c.scimMember(st); m != nil {
		c.json(http.StatusOK, s.scimUserOf(st, m))
	}
}

// scimPatchUser is OrganizationSCIMMemberDetails.patch
// (src/sentry/core/endpoints/scim/members.py): the body must pass
// SCIMPatchRequestSerializer (Operations required, at most 100, each op
// "replace" in any case and a value that is a bool, an object or a
// "true"/"false" string); a partnership member is refused; then the FIRST
// operation decides: active=false (path "active", or an object value with
// active false) deletes the member (204), anything else is "Invalid Patch
// Operation." An empty Operations list answers 200 with the user.
func (s *Sandbox) scimPatchUser(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "member:write", "member:admin") {
		return
	}
	m := c.scimMember(st)
	if m == nil {
		return
	}
	top, ok := decodeLoose(c.body)
	if !ok {
		c.detail(http.StatusBadRequest, "JSON parse error - Expecting value")
		return
	}
	obj, ok := top.(map[string]any)
	if !ok {
		scimError(c.w, http.StatusBadRequest, compactJSON(map[string][]string{"non_field_errors": {"Invalid data. Expected a dictionary, but got " + pyType(top) + "."}}))
		return
	}
	var errs orderedObj
	if sv, present := obj["schemas"]; present {
		if msg := listField(sv, true); msg != "" {
			errs = append(errs, kv{"schemas", []string{msg}})
		}
	}
	ov, present := obj["Operations"]
	ops, _ := ov.([]any)
	if msg := listField(ov, present); msg != "" {
		errs = append(errs, kv{"Operations", []string{msg}})
	} else if oe := validateOps(ops, func(op string) bool { return op == "replace" }, true); oe != nil {
		errs = append(errs, kv{"Operations", oe})
	} else if len(ops) > 100 {
		errs = append(errs, kv{"Operations", []string{"Ensure this field has no more than 100 elements."}})
	}
	if errs != nil {
		scimError(c.w, http.StatusBadRequest, compactJSON(errs))
		return
	}
	if m.flags[flagPartnership] {
		c.detail(http.StatusForbidden, msgPartnership)
		return
	}
	if len(ops) == 0 {
		c.json(http.StatusOK, s.scimUserOf(st, m))
		return
	}
	if !shouldDeleteMember(ops[0].(map[string]any)) {
		scimError(c.w, http.StatusBadRequest, "Invalid Patch Operation.")
		return
	}
	if st.isOnlyOwner(m) {
		c.detail(http.StatusForbidden, msgLastOwner)
		return
	}
	s.removeMember(st, c.p, m)
	writeEmpty(c.w, http.StatusNoContent)
}

// shouldDeleteMember is _should_delete_member over a validated operation.
func shouldDeleteMember(op map[string]any) bool {
	if v, ok := op["value"].(map[string]any); ok {
		b, ok := maybeBool(v["active"])
		return ok && !b
	}
	if p, _ := op["path"].(string); p == "active" {
		b, ok := maybeBool(op["value"])
		return ok && !b
	}
	return false
}

func (c *call) scimCanDelete(st *state, m *member) bool {
	if m.flags[flagPartnership] {
		c.detail(http.StatusForbidden, msgPartnership)
		return false
	}
	if st.isOnlyOwner(m) {
		c.detail(http.StatusForbidden, msgLastOwner)
		return false
	}
	return true
}

func (s *Sandbox) scimDeleteUser(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "member:admin") {
		return
	}
	m := c.scimMember(st)
	if m == nil {
		return
	}
	if !c.scimCanDelete(st, m) {
		return
	}
	s.removeMember(st, c.p, m)
	writeEmpty(c.w, http.StatusNoContent)
}

// scimRole checks a sentryOrgRole against the roles SCIM may set: every
// role without org:admin (src/sentry/core/endpoints/scim/members.py). The
// value is lower-cased, not trimmed.
func scimRole(r string) (string, bool) {
	r = strings.ToLower(r)
	switch r {
	case "member", "admin", "manager", "billing":
		return r, true
	}
	return "", false
}

const msgInvalidOrgRole = "Invalid organization role."

// sentryOrgRole reads a truthy sentryOrgRole; crash is a non-string value
// (Python's .lower() on it raises).
func sentryOrgRole(obj map[string]any) (role string, given, crash bool) {
	v, ok := obj["sentryOrgRole"]
	if !ok || v == nil || v == false || v == "" {
		return "", false, false
	}
	sv, ok := v.(string)
	if !ok {
		return "", false, true
	}
	return sv, true, false
}

// scimCreateUser is OrganizationSCIMMemberIndex.post: the role is checked
// first, then the email through OrganizationMemberRequestSerializer; an
// email already in the organization (member or approved pending invite) is
// 409 "User already exists in the database."
func (s *Sandbox) scimCreateUser(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "member:write", "member:admin") {
		return
	}
	top, ok := decodeLoose(c.body)
	if !ok {
		c.detail(http.StatusBadRequest, "JSON parse error - Expecting value")
		return
	}
	obj, ok := top.(map[string]any)
	if !ok {
		internalError(c.w) // request.data.get on a list
		return
	}
	role, restricted := "member", false
	if r, given, crash := sentryOrgRole(obj); crash {
		internalError(c.w)
		return
	} else if given {
		role, restricted = strings.ToLower(r), true
	}
	if _, ok := scimRole(role); !ok {
		scimError(c.w, http.StatusBadRequest, msgInvalidOrgRole)
		return
	}
	email, isStr := obj["userName"].(string)
	switch {
	case obj["userName"] == nil:
		scimError(c.w, http.StatusBadRequest, `{"email":["This field may not be null."]}`)
		return
	case !isStr || strings.TrimSpace(email) == "":
		scimError(c.w, http.StatusBadRequest, `{"email":["This field may not be blank."]}`)
		return
	}
	email = strings.TrimSpace(email)
	if at := strings.LastIndexByte(email, '@'); at < 1 || at == len(email)-1 || strings.ContainsAny(email, " \t") {
		scimError(c.w, http.StatusBadRequest, `{"email":["Enter a valid email address."]}`)
		return
	}
	if st.memberByEmail[lower(email)] != nil {
		scimError(c.w, http.StatusConflict, "User already exists in the database.")
		return
	}
	for _, u := range []*user{st.userByEmail[lower(email)], st.userByAlt[lower(email)]} {
		if u != nil && st.memberByUser[u.id] != nil {
			scimError(c.w, http.StatusConflict, "User already exists in the database.")
			return
		}
	}
	if !s.inviteQuota(email) {
		c.detail(http.StatusTooManyRequests, msgInviteQuota)
		return
	}
	m := s.createInvite(st, c.p, email, role, map[string]bool{flagIdPProvisioned: true, flagIdPRoleRestrict: restricted})
	c.json(http.StatusCreated, s.scimUserOf(st, m))
}

// scimPutUser is OrganizationSCIMMemberDetails.put: only the org role.
func (s *Sandbox) scimPutUser(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "member:write", "member:admin") {
		return
	}
	m := c.scimMember(st)
	if m == nil {
		return
	}
	top, ok := decodeLoose(c.body)
	if !ok {
		c.detail(http.StatusBadRequest, "JSON parse error - Expecting value")
		return
	}
	obj, ok := top.(map[string]any)
	if !ok {
		internalError(c.w)
		return
	}
	// The top role (owner) is never changed; the flags are set and 200.
	if m.role == "owner" {
		m.flags[flagIdPRoleRestrict] = false
		m.flags[flagIdPProvisioned] = true
		m.invalidate()
		c.json(http.StatusOK, s.scimUserOf(st, m))
		return
	}
	if m.flags[flagPartnership] {
		c.detail(http.StatusForbidden, msgPartnership)
		return
	}
	r, given, crash := sentryOrgRole(obj)
	if crash {
		internalError(c.w)
		return
	}
	var requested string
	var restrict bool
	if given {
		if m.flags[flagIdPRoleRestrict] && strings.EqualFold(m.role, r) {
			c.json(http.StatusOK, s.scimUserOf(st, m))
			return
		}
		requested, restrict = strings.ToLower(r), true
	} else {
		if m.role != "member" && !m.flags[flagIdPRoleRestrict] {
			c.json(http.StatusOK, s.scimUserOf(st, m))
			return
		}
		requested, restrict = "member", false
	}
	if _, ok := scimRole(requested); !ok {
		scimError(c.w, http.StatusBadRequest, msgInvalidOrgRole)
		return
	}
	before := m.role
	m.role = requested
	m.flags[flagIdPRoleRestrict] = restrict
	m.flags[flagIdPProvisioned] = true
	if m.role != before {
		for t, r := range m.teams {
			m.teams[t] = normalizeTeamRole(m.role, r)
		}
		s.stats.mutation("member.edit", m.Email())
		s.audit(st, c.p, "member.edit", "edited member "+m.Email(), m.id, userID(m), map[string]any{"role": m.role})
	}
	m.invalidate()
	c.json(http.StatusOK, s.scimUserOf(st, m))
}

// ---- Groups ----

// scimListGroups is OrganizationSCIMTeamIndex.get: active teams by slug,
// a filter matching the slugified value case-insensitively,
// excludedAttributes=members (an exact list element) dropping members.
func (s *Sandbox) scimListGroups(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.scimGate(st, "team:read", "team:write", "team:admin") {
		return
	}
	q, ok := c.scimQueryParams()
	if !ok {
		return
	}
	items := st.sortedTeams()
	if q.filter != "" {
		items = nil
		if t := st.teamBySlug[slugify(q.filter)]; t != nil {
			items = []*team{t}
		}
	}
	pg := scimPage(items, q.start, q.limit)
	res := make([]any, 0, len(pg))
	for _, t := range pg {
		res = append(res, s.scimGroupOf(t, !q.excludes("members")))
	}
	c.json(http.StatusOK, scimList{Schemas: []string{scimListSchema}, TotalResults: len(items), StartIndex: q.start,
		ItemsPerPage: len(res), Resources: res})
}

func (c *call) scimTeam(st *state) *team {
	t := st.teamByIDOrSlug(c.r.PathValue("team_id_or_slug"))
	if t == nil {
		scimError(c.w, http.StatusNotFound, "Group not found.")
	}
	return t
}

// scimGetGroup validates the query string like the list does
// (get_query_parameters runs here too) and honours excludedAttributes.
func (s *Sandbox) scimGetGroup(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.scimGate(st, "team:read", "team:write", "team:admin") {
		return
	}
	t := c.scimTeam(st)
	if t == nil {
		return
	}
	q, ok := c.scimQueryParams()
	if !ok {
		return
	}
	c.json(http.StatusOK, s.scimGroupOf(t, !q.excludes("members")))
}

func (s *Sandbox) scimCreateGroup(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "team:write", "team:admin") {
		return
	}
	var b struct {
		DisplayName string `json:"displayName"`
	}
	if err := json.Unmarshal(c.body, &b); err != nil || strings.TrimSpace(b.DisplayName) == "" {
		scimError(c.w, http.StatusBadRequest, `{"displayName":["This field is required."]}`)
		return
	}
	slug := slugify(b.DisplayName)
	if st.teamBySlug[slug] != nil {
		c.json(http.StatusConflict, map[string]any{"non_field_errors": []string{"A team with this slug already exists."},
			"detail": "A team with this slug already exists."})
		return
	}
	t := s.createTeam(st, c.p, slug, b.DisplayName)
	t.idp = true
	c.json(http.StatusCreated, s.scimGroupOf(t, true))
}

func (s *Sandbox) createTeam(st *state, p *principal, slug, name string) *team {
	t := &team{id: st.newID(), slug: slug, name: name, dateCreated: s.now().UTC(),
		members: map[*member]struct{}{}, projects: map[*project]struct{}{}}
	st.addTeam(t)
	// OrganizationSCIMTeamIndex.post is OrganizationTeamsEndpoint.post
	// (src/sentry/core/endpoints/scim/teams.py): the same team.create entry,
	// with Team.get_audit_log_data; a SCIM token is no user, so nobody joins.
	s.audit(st, p, "team.create", "created team "+slug, t.id, 0, teamAuditData(t, 0))
	s.stats.mutation("team.create", slug)
	return t
}

// groupFail is how a Group PATCH operation fails. Sentry runs the
// operations inside one transaction: an exception (member not found, bad
// filter, rename refused, a crash) rolls every earlier operation back, but
// the unsupported-replace answer is a plain return, so the operations
// before it (and idp_provisioned) are committed.
type groupFail struct {
	status int
	body   any
	commit bool
}

var (
	failCrash    = &groupFail{status: http.StatusInternalServerError, body: map[string]string{"detail": "Internal Error", "errorId": "sandbox-scim"}}
	failFilter   = &groupFail{status: http.StatusBadRequest, body: map[string]any{"schemas": []string{scimErrorSchema}, "scimType": "invalidFilter"}}
	failNoUser   = &groupFail{status: http.StatusNotFound, body: map[string]any{"schemas": []string{scimErrorSchema}, "detail": "User not found."}}
	failReplAttr = &groupFail{status: http.StatusBadRequest, commit: true,
		body: map[string]any{"schemas": []string{scimErrorSchema}, "detail": "Invalid Replace attr. Only displayName and members supported."}}
)

// memberRef resolves one {"value": id} reference (an int or a numeric
// string, as Django casts it; anything else raises).
func memberRef(st *state, ref any) (*member, *groupFail) {
	obj, ok := ref.(map[string]any)
	if !ok {
		return nil, failCrash
	}
	var id string
	switch v := obj["value"].(type) {
	case json.Number:
		id = v.String()
	case string:
		id = strings.TrimSpace(v)
	default:
		return nil, failCrash
	}
	if _, err := strconv.ParseInt(id, 10, 64); err != nil {
		return nil, failCrash
	}
	m := st.memberByIDStr(id)
	if m == nil {
		return nil, failNoUser
	}
	return m, nil
}

func memberRefs(st *state, v any) ([]*member, *groupFail) {
	list, ok := v.([]any)
	if !ok {
		return nil, failCrash
	}
	out := make([]*member, 0, len(list))
	for _, r := range list {
		m, f := memberRef(st, r)
		if f != nil {
			return nil, f
		}
		out = append(out, m)
	}
	return out, nil
}

var bracketRe = regexp.MustCompile(`\[(.*?)\]`)

// removeTarget is _get_member_id_for_remove_op: Azure's value list (only
// its first element counts) or the members[value eq "id"] path filter.
func removeTarget(st *state, op map[string]any) (*member, *groupFail) {
	if v, ok := op["value"]; ok {
		list, ok := v.([]any)
		if !ok || len(list) == 0 {
			return nil, failCrash
		}
		return memberRef(st, list[0])
	}
	path, _ := op["path"].(string)
	mm := bracketRe.FindStringSubmatch(path)
	if mm == nil {
		return nil, failFilter
	}
	v, out := parseSCIMFilter(mm[1])
	switch out {
	case filterInvalid:
		return nil, failFilter
	case filterCrash:
		return nil, failCrash
	}
	if _, err := strconv.ParseInt(v, 10, 64); err != nil {
		return nil, failCrash // a userName filter reaches the id lookup
	}
	m := st.memberByIDStr(v)
	if m == nil {
		return nil, failNoUser
	}
	return m, nil
}

// scimPatchGroup is OrganizationSCIMTeamDetails.patch
// (src/sentry/core/endpoints/scim/teams.py).
func (s *Sandbox) scimPatchGroup(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "team:write", "team:admin") {
		return
	}
	t := c.scimTeam(st)
	if t == nil {
		return
	}
	top, ok := decodeLoose(c.body)
	if !ok {
		c.detail(http.StatusBadRequest, "JSON parse error - Expecting value")
		return
	}
	obj, ok := top.(map[string]any)
	if !ok {
		scimError(c.w, http.StatusBadRequest, compactJSON(map[string][]string{"non_field_errors": {"Invalid data. Expected a dictionary, but got " + pyType(top) + "."}}))
		return
	}
	var errs orderedObj
	sv, present := obj["schemas"]
	if msg := listField(sv, present); msg != "" {
		errs = append(errs, kv{"schemas", []string{msg}})
	}
	ov, present := obj["Operations"]
	ops, _ := ov.([]any)
	if msg := listField(ov, present); msg != "" {
		errs = append(errs, kv{"Operations", []string{msg}})
	} else if oe := validateOps(ops, func(op string) bool { return op == "add" || op == "remove" || op == "replace" }, false); oe != nil {
		errs = append(errs, kv{"Operations", oe})
	}
	if errs != nil {
		scimError(c.w, http.StatusBadRequest, compactJSON(errs))
		return
	}
	if len(ops) > 100 {
		scimError(c.w, http.StatusBadRequest, "Too many patch ops sent, limit is 100.")
		return
	}
	// Dry run to find the first failure, then apply what Sentry commits.
	k, fail := s.scimGroupOps(c, st, t, ops, false)
	if fail != nil && !fail.commit {
		c.json(fail.status, fail.body)
		return
	}
	s.scimGroupOps(c, st, t, ops[:k], true)
	t.idp = true
	if fail != nil {
		c.json(fail.status, fail.body)
		return
	}
	writeEmpty(c.w, http.StatusNoContent)
}

// scimGroupOps runs the operations in order (applying them when apply is
// set) and returns the index of the first failing one and its failure.
// Operations that match no branch (say "add" with a path other than
// "members") are skipped silently, as Sentry's if/elif chain does.
func (s *Sandbox) scimGroupOps(c *call, st *state, t *team, ops []any, apply bool) (int, *groupFail) {
	join := func(m *member) {
		if _, on := m.teams[t]; !on && apply {
			st.setMemberTeam(m, t, "")
			s.audit(st, c.p, "member.join-team", m.Email()+" joined team "+t.slug, m.id, userID(m), map[string]any{"team_slug": t.slug})
			s.stats.mutation("member.join-team", m.Email())
		}
	}
	leave := func(m *member) {
		if _, on := m.teams[t]; on && apply {
			st.unsetMemberTeam(m, t)
			s.audit(st, c.p, "member.leave-team", m.Email()+" left team "+t.slug, m.id, userID(m), map[string]any{"team_slug": t.slug})
			s.stats.mutation("member.leave-team", m.Email())
		}
	}
	rename := func(v any) *groupFail {
		name, ok := v.(string)
		if !ok {
			return failCrash
		}
		slug := slugify(name)
		if !validSlug(slug) {
			return &groupFail{status: http.StatusBadRequest, body: map[string][]string{"slug": {"Enter a valid slug consisting of lowercase letters, numbers, underscores or hyphens. It cannot be entirely numeric."}}}
		}
		if o := st.teamBySlug[slug]; o != nil && o != t {
			return &groupFail{status: http.StatusBadRequest, body: map[string][]string{"slug": {"Another team is already using that slug"}}}
		}
		if !apply {
			return nil
		}
		delete(st.teamBySlug, t.slug)
		t.name, t.slug = name, slug
		st.teamBySlug[slug] = t
		st.teamOrder = nil
		for m := range t.members {
			m.invalidate()
		}
		s.audit(st, c.p, "team.edit", "edited team "+slug, t.id, 0, map[string]any{"slug": slug})
		return nil
	}
	for i, raw := range ops {
		op := raw.(map[string]any)
		name := strings.ToLower(scalarString(op["op"]))
		var fail *groupFail
		switch name {
		case "add":
			path, ok := op["path"]
			if !ok {
				return i, failCrash
			}
			if path != "members" {
				continue
			}
			ms, f := memberRefs(st, op["value"])
			if f != nil {
				return i, f
			}
			for _, m := range ms {
				join(m)
			}
		case "remove":
			path, ok := op["path"].(string)
			if !ok {
				return i, failCrash
			}
			if !strings.Contains(path, "members") {
				continue
			}
			m, f := removeTarget(st, op)
			if f != nil {
				return i, f
			}
			leave(m)
		case "replace":
			path, hasPath := op["path"]
			switch {
			case path == "members":
				ms, f := memberRefs(st, op["value"])
				if f != nil {
					return i, f
				}
				keep := map[*member]bool{}
				for _, m := range ms {
					keep[m] = true
				}
				cur := make([]*member, 0, len(t.members))
				for m := range t.members {
					cur = append(cur, m)
				}
				sort.Slice(cur, func(i, j int) bool { return cur[i].id < cur[j].id })
				for _, m := range cur {
					if !keep[m] {
						leave(m)
					}
				}
				for _, m := range ms {
					join(m)
				}
			case !hasPath || path == nil:
				v, ok := op["value"].(map[string]any)
				if !ok {
					return i, failCrash
				}
				dn, ok := v["displayName"]
				if !ok {
					return i, failCrash
				}
				fail = rename(dn)
			case path == "displayName":
				fail = rename(op["value"])
			default:
				return i, failReplAttr
			}
		}
		if fail != nil {
			return i, fail
		}
	}
	return len(ops), nil
}

// deleteTeamLocked is OrganizationSCIMTeamDetails.delete, which is
// TeamDetailsEndpoint.delete (src/sentry/core/endpoints/scim/teams.py,
// team_details.py): the slug is released by a rename, the team scheduled for
// deletion, and team.remove carries the renamed team (status pending deletion).
func (s *Sandbox) deleteTeamLocked(st *state, p *principal, t *team) {
	renamed := t.slug + "-" + fmt.Sprintf("%016x%016x", uint64(t.id)*0x9e3779b97f4a7c15, uint64(s.now().UnixNano()))
	if len(renamed) > 50 {
		renamed = renamed[:50]
	}
	gone := *t
	gone.slug = renamed
	slug := t.slug
	s.dropTeam(st, t)
	s.audit(st, p, "team.remove", "removed team "+renamed, t.id, 0, teamAuditData(&gone, 1))
	s.stats.mutation("team.remove", slug)
}

func (s *Sandbox) scimDeleteGroup(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.scimGate(st, "team:admin") {
		return
	}
	t := c.scimTeam(st)
	if t == nil {
		return
	}
	s.deleteTeamLocked(st, c.p, t)
	writeEmpty(c.w, http.StatusNoContent)
}

// SCIMView is what the organization's SCIM settings page shows.
type SCIMView struct {
	Enabled  bool   `json:"enabled"`  // SAML and SCIM both on (the SCIM routes answer)
	Provider string `json:"provider"` // "okta" or "azure"
	Token    string `json:"token"`    // the SCIM integration token ("" = none issued)
}

// SCIM returns the SCIM settings, token included (GET /_sandbox/scim).
func (s *Sandbox) SCIM() SCIMView {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.st.scimProvider
	if p == "" {
		p = "okta"
	}
	return SCIMView{Enabled: s.st.scimEnabled && s.st.samlEnabled, Provider: p, Token: s.st.scimToken}
}
