package sentry

import (
	"encoding/json"
	"time"
)

// User is the Sentry user behind a member (nil for pending invites).
type User struct {
	ID     string
	Email  string
	Name   string
	Emails []UserEmail
	// LastLogin is the user's last login to Sentry (nil: never, or not given).
	LastLogin *time.Time
}

// UserEmail is one of a user's addresses. Only the user's primary Email is used
// for matching; secondary addresses are informational.
type UserEmail struct {
	Email      string
	IsVerified bool
}

type userJSON struct {
	ID       string          `json:"id"`
	Email    string          `json:"email"`
	Name     string          `json:"name"`
	Username string          `json:"username,omitempty"`
	Emails   []userEmailJSON `json:"emails,omitempty"`
	// LastLogin is Sentry's user.lastLogin (null when the user never logged in).
	LastLogin *time.Time `json:"lastLogin,omitempty"`
}

type userEmailJSON struct {
	ID         string `json:"id,omitempty"`
	Email      string `json:"email"`
	IsVerified bool   `json:"is_verified"`
}

// UnmarshalJSON reads Sentry's user serializer.
func (u *User) UnmarshalJSON(b []byte) error {
	var w userJSON
	if err := unmarshal(b, &w); err != nil {
		return err
	}
	*u = User{ID: w.ID, Email: w.Email, Name: w.Name, LastLogin: w.LastLogin}
	for _, e := range w.Emails {
		u.Emails = append(u.Emails, UserEmail{Email: e.Email, IsVerified: e.IsVerified})
	}
	return nil
}

// MarshalJSON writes Sentry's user shape, so a User round-trips.
func (u User) MarshalJSON() ([]byte, error) {
	w := userJSON{ID: u.ID, Email: u.Email, Name: u.Name, LastLogin: u.LastLogin}
	for _, e := range u.Emails {
		w.Emails = append(w.Emails, userEmailJSON{Email: e.Email, IsVerified: e.IsVerified})
	}
	return json.Marshal(w)
}

// TeamRole is one entry of a member's teamRoles. A nil Role means the team role
// implied by the org role (Sentry stores roles at or below that minimum as null).
type TeamRole struct {
	TeamSlug string  `json:"teamSlug"`
	Role     *string `json:"role"`
}

// Member is an organization member or pending invite.
type Member struct {
	ID      string
	Email   string
	Name    string
	User    *User // nil for pending invites
	OrgRole string
	Pending bool
	Expired bool
	// Flags: "idp:provisioned", "idp:role-restricted", "sso:linked", "sso:invalid",
	// "member-limit:restricted", "partnership:restricted".
	Flags        map[string]bool
	InviteStatus string
	Teams        []string   // detail endpoints only
	TeamRoles    []TeamRole // detail endpoints only
	DateCreated  time.Time
	// TeamRole and TeamSlug are set by the team-members endpoint.
	TeamRole *string
	TeamSlug string
}

// IdPProvisioned reports whether the member was provisioned by SCIM; the REST API
// refuses to delete such members (use SCIMDeleteUser).
func (m Member) IdPProvisioned() bool { return m.Flags["idp:provisioned"] }

// SSOLinked reports the "sso:linked" flag.
func (m Member) SSOLinked() bool { return m.Flags["sso:linked"] }

// RoleRestricted reports the idp:role-restricted flag: the identity provider
// owns the member's org role. Sentry's member PUT does not enforce it (its
// check is disabled), so callers must.
func (m Member) RoleRestricted() bool { return m.Flags["idp:role-restricted"] }

// UserID is the Sentry user id, "" for pending invites.
func (m Member) UserID() string {
	if m.User == nil {
		return ""
	}
	return m.User.ID
}

type memberJSON struct {
	ID           string          `json:"id"`
	Email        string          `json:"email"`
	Name         string          `json:"name"`
	User         *User           `json:"user"`
	Role         string          `json:"role,omitempty"`
	OrgRole      string          `json:"orgRole"`
	Pending      bool            `json:"pending"`
	Expired      bool            `json:"expired"`
	Flags        map[string]bool `json:"flags,omitempty"`
	InviteStatus string          `json:"inviteStatus,omitempty"`
	Teams        []string        `json:"teams,omitempty"`
	TeamRoles    []TeamRole      `json:"teamRoles,omitempty"`
	DateCreated  *time.Time      `json:"dateCreated,omitempty"`
	TeamRole     *string         `json:"teamRole,omitempty"`
	TeamSlug     string          `json:"teamSlug,omitempty"`
}

// UnmarshalJSON reads Sentry's member serializers (index, detail, team members).
func (m *Member) UnmarshalJSON(b []byte) error {
	var w memberJSON
	if err := unmarshal(b, &w); err != nil {
		return err
	}
	*m = w.member()
	return nil
}

// member converts the wire shape: orgRole, or the older role field.
func (w *memberJSON) member() Member {
	role := w.OrgRole
	if role == "" {
		role = w.Role
	}
	m := Member{
		ID: w.ID, Email: w.Email, Name: w.Name, User: w.User, OrgRole: role,
		Pending: w.Pending, Expired: w.Expired, Flags: w.Flags, InviteStatus: w.InviteStatus,
		Teams: w.Teams, TeamRoles: w.TeamRoles, TeamRole: w.TeamRole, TeamSlug: w.TeamSlug,
	}
	if w.DateCreated != nil {
		m.DateCreated = *w.DateCreated
	}
	return m
}

// MarshalJSON writes Sentry's member shape, so a Member round-trips.
func (m Member) MarshalJSON() ([]byte, error) {
	w := memberJSON{
		ID: m.ID, Email: m.Email, Name: m.Name, User: m.User, Role: m.OrgRole, OrgRole: m.OrgRole,
		Pending: m.Pending, Expired: m.Expired, Flags: m.Flags, InviteStatus: m.InviteStatus,
		Teams: m.Teams, TeamRoles: m.TeamRoles, TeamRole: m.TeamRole, TeamSlug: m.TeamSlug,
	}
	if !m.DateCreated.IsZero() {
		t := m.DateCreated
		w.DateCreated = &t
	}
	return json.Marshal(w)
}

// Team is a Sentry team.
type Team struct {
	ID          string          `json:"id"`
	Slug        string          `json:"slug"`
	Name        string          `json:"name"`
	DateCreated time.Time       `json:"dateCreated"`
	IsMember    bool            `json:"isMember"`
	TeamRole    *string         `json:"teamRole"`
	Flags       map[string]bool `json:"flags"`
	MemberCount int             `json:"memberCount"`
	Projects    []Project       `json:"projects,omitempty"`
}

// IdPProvisioned reports whether the team is managed by SCIM (the REST API then
// refuses changes to it and its members).
func (t Team) IdPProvisioned() bool { return t.Flags["idp:provisioned"] }

// Project is a Sentry project.
type Project struct {
	ID          string    `json:"id"`
	Slug        string    `json:"slug"`
	Name        string    `json:"name"`
	Platform    string    `json:"platform,omitempty"`
	DateCreated time.Time `json:"dateCreated"`
	Teams       []Team    `json:"teams,omitempty"`
}

// OrgAuthToken is an organization auth token (sntrys_). The API has no creator
// field; the audit log event org-auth-token.create names the actor.
type OrgAuthToken struct {
	ID                  string     `json:"id"`
	Name                string     `json:"name"`
	Scopes              []string   `json:"scopes"`
	TokenLastCharacters string     `json:"tokenLastCharacters"`
	DateCreated         time.Time  `json:"dateCreated"`
	DateLastUsed        *time.Time `json:"dateLastUsed"`
	ProjectLastUsedID   *string    `json:"projectLastUsedId"`
}

// AuditLogEntry is one row of the organization audit log.
type AuditLogEntry struct {
	ID           string          `json:"id"`
	Actor        *AuditActor     `json:"actor"`
	Event        string          `json:"event"`
	IPAddress    string          `json:"ipAddress"`
	Note         string          `json:"note"`
	TargetObject json.RawMessage `json:"targetObject"`
	TargetUser   json.RawMessage `json:"targetUser"`
	Data         map[string]any  `json:"data"`
	DateCreated  time.Time       `json:"dateCreated"`
}

// AuditActor is the user (or integration, with only Name) that caused an event.
type AuditActor struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// SCIMUser is a SCIM v2 User; its ID is the organization member id.
type SCIMUser struct {
	Schemas  []string    `json:"schemas,omitempty"`
	ID       string      `json:"id"`
	UserName string      `json:"userName"`
	Emails   []SCIMEmail `json:"emails,omitempty"`
	Name     *SCIMName   `json:"name,omitempty"`
	// Active is omitted by Sentry for Azure AD-backed orgs.
	Active        *bool  `json:"active,omitempty"`
	SentryOrgRole string `json:"sentryOrgRole,omitempty"`
}

// SCIMEmail is an entry of SCIMUser.Emails.
type SCIMEmail struct {
	Primary bool   `json:"primary"`
	Value   string `json:"value"`
	Type    string `json:"type,omitempty"`
}

// SCIMName is SCIMUser.Name (always "N/A" in Sentry).
type SCIMName struct {
	GivenName  string `json:"givenName"`
	FamilyName string `json:"familyName"`
}

// SCIMGroup is a SCIM v2 Group, i.e. a team; DisplayName is the team name.
type SCIMGroup struct {
	Schemas     []string          `json:"schemas,omitempty"`
	ID          string            `json:"id"`
	DisplayName string            `json:"displayName"`
	Members     []SCIMGroupMember `json:"members,omitempty"`
}

// SCIMGroupMember is a member reference in a SCIMGroup (Value = member id).
type SCIMGroupMember struct {
	Value   string `json:"value"`
	Display string `json:"display,omitempty"`
}

type scimList[T any] struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	StartIndex   int      `json:"startIndex"`
	ItemsPerPage int      `json:"itemsPerPage"`
	Resources    []T      `json:"Resources"`
}

const (
	scimSchemaUser     = "urn:ietf:params:scim:schemas:core:2.0:User"
	scimSchemaPatchOp  = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	scimSchemaGroup    = "urn:ietf:params:scim:schemas:core:2.0:Group"
	scimDefaultCount   = 100
	restDefaultPerPage = 100
)
