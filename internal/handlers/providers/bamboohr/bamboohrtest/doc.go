// Package bamboohrtest simulates BambooHR's employee-read API for tests, in the
// manner of httptest, on the shared plumbing of resolvetest. GET
// /api/gateway.php/{companyDomain}/v1/employees/{id}?fields=… Basic auth: API
// key as user, any password. JSON only when Accept asks for it (XML otherwise).
// 404 with X-BambooHR-Error-Message for an unknown employee; 401 for a bad key.
// Requested fields the employee lacks come back null. It keeps its own wire
// shapes and never imports package bamboohr (or resolve), so a shared struct
// cannot hide a contract bug; nothing imports it outside tests.
package bamboohrtest
