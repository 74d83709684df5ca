// Package resolvetest is the shared plumbing of the provider API simulators
// (internal/handlers/providers/<name>/<name>test), in the manner of httptest:
// a loopback Server with the simulated company's people (Person, State),
// injected failures, the requests it served and the access tokens it issued,
// and Seed, the standard company the readers' tests run against. Each
// simulator answers on real paths with its provider's auth scheme and JSON
// shapes, 401 for bad credentials and 404 for unknown ids, as the provider's
// public API documentation describes them. It never imports resolve or a
// provider package, so a shared struct cannot hide a contract bug; nothing
// imports it outside tests and the simulators.
package resolvetest
