// Package hibobtest simulates HiBob's employee-read API for tests, in the
// manner of httptest, on the shared plumbing of resolvetest. POST
// /v1/people/{identifier} {"fields": [...], "humanReadable": …} (and the
// deprecated GET /v1/people/{identifier}); identifier is the employee id or
// email. Basic auth with service user id and token. Only requested fields are
// returned, nested by category. It keeps its own wire shapes and never imports
// package hibob (or resolve), so a shared struct cannot hide a contract bug;
// nothing imports it outside tests.
package hibobtest
