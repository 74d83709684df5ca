// Package ripplingtest simulates Rippling's employee-read API for tests, in the
// manner of httptest, on the shared plumbing of resolvetest. GET
// /platform/api/employees/{id}, Bearer token, Django REST style errors
// {"detail": …}. Guaranteed fields: id, personalEmail, roleState. It keeps its
// own wire shapes and never imports package rippling (or resolve), so a shared
// struct cannot hide a contract bug; nothing imports it outside tests.
package ripplingtest
