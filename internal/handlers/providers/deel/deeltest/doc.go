// Package deeltest simulates Deel's employee-read API for tests, in the manner
// of httptest, on the shared plumbing of resolvetest. GET
// /rest/v2/people/{worker_id} and GET /rest/v2/contracts/{id}, Bearer token,
// answers wrapped in {"data": …}. It keeps its own wire shapes and never
// imports package deel (or resolve), so a shared struct cannot hide a contract
// bug; nothing imports it outside tests.
package deeltest
