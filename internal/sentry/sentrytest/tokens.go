package sentrytest

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
)

type wireOrgToken struct {
	ID                  string   `json:"id"`
	Name                string   `json:"name"`
	Scopes              []string `json:"scopes"`
	TokenLastCharacters string   `json:"tokenLastCharacters"`
	DateCreated         string   `json:"dateCreated"`
	DateLastUsed        *string  `json:"dateLastUsed"`
	ProjectLastUsedID   *string  `json:"projectLastUsedId"`
	Token               string   `json:"token,omitempty"`
}

func wireToken(t *orgToken, withSecret bool) wireOrgToken {
	w := wireOrgToken{ID: strconv.FormatInt(t.id, 10), Name: t.name, Scopes: []string{"org:ci"},
		TokenLastCharacters: t.token[len(t.token)-4:], DateCreated: ts(t.dateCreated), DateLastUsed: tsPtr(t.dateLastUsed)}
	if withSecret {
		w.Token = t.token
	}
	return w
}

func (s *Sandbox) listOrgTokens(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("org:read", "org:write", "org:admin") {
		return
	}
	toks := make([]*orgToken, 0, len(st.tokens))
	for _, t := range st.tokens {
		if t.active {
			toks = append(toks, t)
		}
	}
	// org_auth_tokens.py (get): last use descending with never-used last,
	// then name, then newest first.
	sort.Slice(toks, func(i, j int) bool {
		a, b := toks[i], toks[j]
		switch {
		case a.dateLastUsed != nil && b.dateLastUsed != nil && !a.dateLastUsed.Equal(*b.dateLastUsed):
			return a.dateLastUsed.After(*b.dateLastUsed)
		case (a.dateLastUsed == nil) != (b.dateLastUsed == nil):
			return a.dateLastUsed != nil
		case a.name != b.name:
			return a.name < b.name
		case !a.dateCreated.Equal(b.dateCreated):
			return a.dateCreated.After(b.dateCreated)
		}
		return a.id > b.id
	})
	res := make([]wireOrgToken, 0, len(toks))
	for _, t := range toks {
		res = append(res, wireToken(t, false))
	}
	c.json(http.StatusOK, res)
}

func (s *Sandbox) createOrgToken(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("org:read", "org:write", "org:admin") {
		return
	}
	if c.p.kind != kindUser {
		c.detail(http.StatusForbidden, msgNoPermission)
		return
	}
	// org_auth_tokens.py (post): a missing or empty name is a 400 with the
	// message in a list; the name is not trimmed; model validation
	// (full_clean, max_length 255) reports Django's message, also in a list.
	var b struct {
		Name any `json:"name"`
	}
	if !c.decode(&b) {
		return
	}
	name, _ := b.Name.(string)
	if b.Name == nil || b.Name == "" || b.Name == false {
		c.json(http.StatusBadRequest, map[string][]string{"detail": {"The name cannot be blank."}})
		return
	}
	if name == "" {
		name = fmt.Sprint(b.Name)
	}
	if n := len([]rune(name)); n > 255 {
		c.json(http.StatusBadRequest, map[string][]string{"detail": {fmt.Sprintf("Ensure this value has at most 255 characters (it has %d).", n)}})
		return
	}
	now := s.now().UTC()
	t := &orgToken{id: st.newID(), name: name, creatorID: c.p.user.id, creatorEmail: c.p.user.email,
		dateCreated: now, active: true}
	t.token = fmt.Sprintf("sntrys_sandbox%d_%016x%016x", t.id, uint64(now.UnixNano())*0x9e3779b97f4a7c15, uint64(t.id)*0xbf58476d1ce4e5b9)
	st.tokens[t.id] = t
	st.tokenByText[t.token] = t
	s.audit(st, c.p, "org-auth-token.create", "added org auth token "+name, t.id, 0,
		map[string]any{"name": name, "scopes": []string{"org:ci"}})
	s.stats.mutation("org-auth-token.create", t.creatorEmail)
	c.json(http.StatusCreated, wireToken(t, true))
}

// activeToken is the details endpoints' lookup: an active token of the org.
func (c *call) activeToken(st *state) *orgToken {
	id, _ := strconv.ParseInt(c.r.PathValue("token_id"), 10, 64)
	t := st.tokens[id]
	if t == nil || !t.active {
		c.detail(http.StatusNotFound, msgNotFound)
		return nil
	}
	return t
}

// getOrgToken follows org_auth_token_details.py (get): the token without
// its secret.
func (s *Sandbox) getOrgToken(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("org:read", "org:write", "org:admin") {
		return
	}
	if t := c.activeToken(st); t != nil {
		c.json(http.StatusOK, wireToken(t, false))
	}
}

// putOrgToken follows org_auth_token_details.py (put): only the name
// changes, 204, no audit entry.
func (s *Sandbox) putOrgToken(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("org:read", "org:write", "org:admin") {
		return
	}
	t := c.activeToken(st)
	if t == nil {
		return
	}
	var b struct {
		Name string `json:"name"`
	}
	if !c.decode(&b) {
		return
	}
	if b.Name == "" {
		c.detail(http.StatusBadRequest, "The name cannot be blank.")
		return
	}
	if len([]rune(b.Name)) > 255 {
		c.detail(http.StatusBadRequest, "The name cannot be longer than 255 characters.")
		return
	}
	t.name = b.Name
	writeEmpty(c.w, http.StatusNoContent)
}

func (s *Sandbox) deleteOrgToken(c *call) {
	st := c.lockW()
	defer s.mu.Unlock()
	if !c.need("org:write", "org:admin") {
		return
	}
	t := c.activeToken(st)
	if t == nil {
		return
	}
	t.active = false
	delete(st.tokenByText, t.token)
	s.audit(st, c.p, "org-auth-token.remove", "removed org auth token "+t.name, t.id, 0,
		map[string]any{"name": t.name, "scopes": []string{"org:ci"}})
	key := t.creatorEmail
	if key == "" {
		key = "token:" + t.name
	}
	s.stats.mutation("org-auth-token.remove", key)
	writeEmpty(c.w, http.StatusNoContent)
}

// ---- audit logs ----

type wireAudit struct {
	ID           string         `json:"id"`
	Actor        any            `json:"actor"`
	Event        string         `json:"event"`
	IPAddress    string         `json:"ipAddress"`
	Note         string         `json:"note"`
	TargetObject *int64         `json:"targetObject"`
	TargetUser   any            `json:"targetUser"`
	Data         map[string]any `json:"data"`
	DateCreated  string         `json:"dateCreated"`
}

func (s *Sandbox) wireAuditEntry(st *state, e *auditEntry) wireAudit {
	w := wireAudit{ID: strconv.FormatInt(e.id, 10), Event: e.event, IPAddress: e.ip, Note: e.note, Data: e.data,
		DateCreated: ts(e.dateCreated)}
	if e.targetObject != 0 {
		to := e.targetObject
		w.TargetObject = &to
	}
	switch {
	case e.actorUserID > 0 && st.users[e.actorUserID] != nil:
		w.Actor = s.wireUser(st.users[e.actorUserID])
	case e.actorName != "":
		w.Actor = map[string]string{"name": e.actorName}
	default:
		w.Actor = map[string]string{"name": "Sentry"}
	}
	if e.targetUserID > 0 && st.users[e.targetUserID] != nil {
		w.TargetUser = s.wireUser(st.users[e.targetUserID])
	}
	return w
}

func (s *Sandbox) auditLogs(c *call) {
	st := c.lockR()
	defer s.mu.RUnlock()
	if !c.need("org:write") {
		return
	}
	limit, ok := c.parsePerPage()
	if !ok {
		return
	}
	q := c.r.URL.Query()
	var cu cursor
	hasCursor := false
	if cs := q.Get("cursor"); cs != "" {
		if cu, ok = parseCursor(cs); !ok || cu.offset < 0 {
			c.detail(http.StatusBadRequest, "Invalid cursor parameter.")
			return
		}
		hasCursor = !cu.isPrev
	}
	event := q.Get("event")
	var actor int64 = -1
	if a := q.Get("actor"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			c.json(http.StatusBadRequest, map[string][]string{"actor": {"A valid integer is required."}})
			return
		}
		actor = n
	}
	// newest first
	rows := make([]*auditEntry, 0, 64)
	for i := len(st.audit) - 1; i >= 0; i-- {
		e := st.audit[i]
		if event != "" && e.event != event {
			continue
		}
		if actor >= 0 && e.actorUserID != actor {
			continue
		}
		rows = append(rows, e)
	}
	ms := func(e *auditEntry) int64 { return e.dateCreated.UnixMilli() }
	start := 0
	if hasCursor {
		start = sort.Search(len(rows), func(i int) bool { return ms(rows[i]) <= cu.value })
		start += cu.offset
		if start > len(rows) {
			start = len(rows)
		}
	}
	end := start + limit
	if end > len(rows) {
		end = len(rows)
	}
	page := rows[start:end]
	out := make([]wireAudit, 0, len(page))
	for _, e := range page {
		out = append(out, s.wireAuditEntry(st, e))
	}
	base := c.linkBase()
	next := cursor{value: 0, offset: 0}
	if len(page) > 0 {
		last := ms(page[len(page)-1])
		first := sort.Search(len(rows), func(i int) bool { return ms(rows[i]) <= last })
		next = cursor{value: last, offset: end - first}
	} else if hasCursor {
		next = cu
	}
	prev := cursor{value: 0, offset: 0, isPrev: true}
	if len(page) > 0 {
		prev.value = ms(page[0])
	}
	c.w.Header().Set("Link", linkEntry(base, "previous", prev, start > 0)+", "+linkEntry(base, "next", next, end < len(rows)))
	c.json(http.StatusOK, map[string]any{"rows": out, "options": auditEventNames()})
}

// AuditEntry is a read-only view of an audit-log entry.
type AuditEntry struct {
	ID          string
	Event       string
	ActorUserID string // "" when the actor is not a user
	ActorName   string
	TargetID    string
	Data        map[string]any
}

// AuditLog returns the audit log oldest first.
func (s *Sandbox) AuditLog() []AuditEntry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]AuditEntry, 0, len(s.st.audit))
	for _, e := range s.st.audit {
		a := AuditEntry{ID: strconv.FormatInt(e.id, 10), Event: e.event, ActorName: e.actorName,
			TargetID: strconv.FormatInt(e.targetObject, 10), Data: e.data}
		if e.actorUserID > 0 {
			a.ActorUserID = strconv.FormatInt(e.actorUserID, 10)
		}
		out = append(out, a)
	}
	return out
}

// OrgAuthToken is a read-only view of an org auth token.
type OrgAuthToken struct {
	ID, Name, Token, CreatorEmail string
	Active                        bool
}

// OrgAuthTokens lists every org auth token (active and revoked) by id.
func (s *Sandbox) OrgAuthTokens() []OrgAuthToken {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]OrgAuthToken, 0, len(s.st.tokens))
	for _, t := range s.st.tokens {
		out = append(out, OrgAuthToken{ID: strconv.FormatInt(t.id, 10), Name: t.name, Token: t.token,
			CreatorEmail: t.creatorEmail, Active: t.active})
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.ParseInt(out[i].ID, 10, 64)
		b, _ := strconv.ParseInt(out[j].ID, 10, 64)
		return a < b
	})
	return out
}
