// Package gustotest simulates Gusto's employee-read API for tests, in the
// manner of httptest, on the shared plumbing of resolvetest. GET
// /v1/employees/{employee_uuid}, Bearer token, errors as {"errors":
// [{"error_key", "category", "message"}]}. It keeps its own wire shapes and
// never imports package gusto (or resolve), so a shared struct cannot hide a
// contract bug; nothing imports it outside tests.
package gustotest
