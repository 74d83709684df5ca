package policy

import (
	"go.yaml.in/yaml/v3"
)

// TokenHygiene selects org auth tokens to report or revoke: unused for
// UnusedDays, older than MaxAgeDays, or created by someone who is no longer a
// member (always checked). Zero days disable that criterion.
type TokenHygiene struct {
	UnusedDays int    `yaml:"unused_days"`
	MaxAgeDays int    `yaml:"max_age_days"`
	Action     string `yaml:"action"` // report (default) | revoke
}

// ActionOrDefault is Action, "report" when unset.
func (t TokenHygiene) ActionOrDefault() string {
	if t.Action == "" {
		return "report"
	}
	return t.Action
}

// SSO policy.
type SSO struct {
	// Required: members without sso:linked are reported.
	Required bool `yaml:"required"`
}

// Invites policy for pending invites.
type Invites struct {
	// Expired: resend (default) re-sends an expired invite of an active person;
	// remove deletes it. An expired invite of a leaver is deleted either way; one
	// of nobody in the directory follows reconcile.orphans (report or remove);
	// protected people's invites and those of people with no status yet are
	// left alone.
	Expired string `yaml:"expired"`
}

// ExpiredOrDefault is Expired, "resend" when unset.
func (i Invites) ExpiredOrDefault() string {
	if i.Expired == "" {
		return "resend"
	}
	return i.Expired
}

// validateExtensions checks the token_hygiene, sso and invites sections.
func (p *Policy) validateExtensions(name string, root *yaml.Node) error {
	fail := func(field string, path []string, msg string) error {
		return &Error{File: name, Line: lineOf(root, path), Field: field, Msg: msg}
	}
	switch p.TokenHygiene.Action {
	case "", "report", "revoke":
	default:
		return fail("token_hygiene.action", []string{"token_hygiene", "action"}, "\""+p.TokenHygiene.Action+"\": want report or revoke")
	}
	if p.TokenHygiene.UnusedDays < 0 || p.TokenHygiene.MaxAgeDays < 0 {
		return fail("token_hygiene", []string{"token_hygiene"}, "days must not be negative")
	}
	switch p.Invites.Expired {
	case "", "resend", "remove":
	default:
		return fail("invites.expired", []string{"invites", "expired"}, "\""+p.Invites.Expired+"\": want resend or remove")
	}
	return nil
}
