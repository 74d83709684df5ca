// Package oktatest is an in-memory simulator of the Okta API endpoints that
// package oktaapi calls (users, user groups, System Log), modelled on
// httptest: SSWS token auth, Okta error bodies, rate-limit headers, Link
// pagination (System Log polling mode included) and injectable faults. It has
// its own wire structs and never imports oktaapi (or package okta), so a
// shared struct cannot hide a contract bug; nothing imports it outside tests.
package oktatest
