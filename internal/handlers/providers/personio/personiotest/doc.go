// Package personiotest simulates Personio's employee-read API for tests, in the
// manner of httptest, on the shared plumbing of resolvetest. POST
// /v2/auth/token (client credentials, form-encoded), then GET /v2/persons/{id}
// and GET /v2/persons/{id}/employments with the bearer token. It keeps its own
// wire shapes and never imports package personio (or resolve), so a shared
// struct cannot hide a contract bug; nothing imports it outside tests.
package personiotest
