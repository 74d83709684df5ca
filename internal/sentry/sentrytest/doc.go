// Package sentrytest is the Sentry API sandbox: an in-memory HTTP simulator of
// one Sentry organization (users with secondary emails, members and pending
// invites with their flags, org roles, teams and team roles stored the way
// Sentry stores them, projects, org auth tokens, the audit log) serving the
// organization details, member, team, SCIM, org-auth-token and audit-log
// endpoints under /api/0/
// with Sentry's status codes, bodies, Link pagination, rate-limit headers and
// invite quotas, plus a /_sandbox/ control surface (stats, fault injection,
// invite acceptance). It owns its own wire structs and must not import
// github.com/sentry-jml/sentry-jml/internal/sentry (or any other project
// package), so that a struct shared with the client cannot hide a contract
// bug; non-test code uses only the standard library.
//
// # Authentication
//
// Options.Token (default "sandbox") is a user auth token of Options.ServiceUser
// (default jml-bot@acme.test, a manager in the demo seed); its scopes are
// Options.TokenScopes ∩ the member's role scopes, re-derived on every request
// (a removed user's token gets 403). With that token, the header
// "X-Sandbox-Act-As: <email>" acts as any seeded user with the full scopes of
// that user's role. Org auth tokens (sntrys_…, created through the API or the
// seed) carry only org:ci. Options.SCIMToken is the SCIM internal-integration
// token (member:read/write/admin, team:write/admin, as Sentry creates it; it
// also works on the REST routes those scopes allow); SCIM endpoints also need
// SAML and SCIM enabled on the organization. `jml sandbox --scim-token`
// sets it (generated and printed when empty); `jml run`'s embedded sandbox
// takes JML_SANDBOX_SCIM_TOKEN or generates one into its data dir.
//
// # Organization details and regions
//
// GET /api/0/organizations/{org}/ answers as Sentry's
// OrganizationDetailsEndpoint: base fields for any caller with an org:*
// scope, the detailed ones (access, role lists, the caller's orgRole) with
// org:read, teams and projects unless detailed=0, features only with
// include_feature_flags. links.regionUrl and links.organizationUrl are the
// sandbox's own URL (a single-host Sentry), or Options.RegionURL and
// Options.OrganizationURL to stand in for sentry.io and its region.
//
// # Control endpoints (no authentication)
//
//	GET    /_sandbox/stats                      Stats as JSON
//	GET    /_sandbox/requests                   the last 10,000 API requests (LoggedRequest), oldest first
//	POST   /_sandbox/stats/reset                clear the request log and counters
//	GET    /_sandbox/faults                     active faults
//	POST   /_sandbox/faults                     add a Fault or a JSON array of them, e.g.
//	                                            {"pattern":"/api/0/organizations/{organization_id_or_slug}/members/{member_id}/",
//	                                             "method":"DELETE","kind":"error","status":503,"rate":0.2,"count":0,
//	                                             "latency":"250ms","after":false}
//	DELETE /_sandbox/faults                     remove all faults
//	POST   /_sandbox/invites/{member_id}/accept accept a pending invite as the invited user
//	GET    /_sandbox/members[?email=]           MemberView list (or one member)
//	GET    /_sandbox/audit-log                  the audit log, oldest first
//	GET    /_sandbox/org-auth-tokens            org auth tokens incl. plaintext and creator
//	GET    /_sandbox/scim                       SCIM settings: enabled, provider, token
//
// # Seed file format
//
// A seed is JSON (LoadSeed rejects unknown fields). Ids are optional numeric
// strings; omitted ones are allocated. Team roles are "contributor", "admin"
// or ""/null and are normalised on load (a role at or below the org role's
// minimum team role is stored as null, as Sentry does). Flags are Sentry's
// member flags: idp:provisioned, idp:role-restricted, sso:linked, sso:invalid,
// member-limit:restricted, partnership:restricted. Every org auth token gets
// an org-auth-token.create audit entry whose actor is createdBy.
//
//	{
//	  "organization": {"slug": "acme", "name": "Acme Corp", "saml": true, "scim": true,
//	                   "scimProvider": "okta"},          // "azure" omits "active" in SCIM users
//	  "teams": [{"slug": "payments", "name": "Payments"},
//	            {"slug": "okta-engineering", "name": "Okta Engineering", "idpProvisioned": true}],
//	  "members": [
//	    {"email": "jane.doe@acme.test", "name": "Jane Doe", "orgRole": "member",
//	     "flags": ["sso:linked"], "teams": {"payments": "admin", "okta-engineering": null},
//	     "secondaryEmails": [{"email": "jane@example.org", "verified": true}],
//	     "invitedBy": "olivia.owner@acme.test"},
//	    {"email": "new.hire@acme.test", "orgRole": "member", "pending": true}
//	  ],
//	  "projects": [{"slug": "checkout-api", "platform": "go", "teams": ["payments"]}],
//	  "orgAuthTokens": [{"name": "ci-release-upload", "createdBy": "jane.doe@acme.test"}],
//	  "generate": {"members": 100000, "teams": 2000, "teamsPerMember": 2,
//	               "pendingEvery": 50, "idpEvery": 10, "teamAdminEvery": 20,
//	               "managerEvery": 0, "idpTeamsEvery": 100}
//	}
//
// "generate" deterministically appends synthetic members user000001@<org>.test…
// and teams team-0001… after the explicit ones (for load tests).
//
// # Modelled behaviour worth knowing
//
// A member PUT always replaces the whole team set (an absent teamRoles
// clears it, as Sentry's replace step runs unconditionally). SCIM
// active=false deletes the member. Stats.Mutations counts only real state
// changes (a repeated, no-op request is not a mutation); kinds are
// member.remove, member.invite, member.reinvite, member.accept-invite,
// member.edit (org role), member.join-team, member.leave-team,
// member.team-role, team.create, team.remove, project-team.add,
// project-team.remove, org-auth-token.create and org-auth-token.remove
// (keyed by the token creator's email).
package sentrytest
