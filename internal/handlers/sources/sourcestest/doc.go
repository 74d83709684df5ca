// Package sourcestest holds the test helpers the provider packages' webhook
// source tests share (internal/handlers/providers/<name>): the fixtures and
// signature vectors of testdata/webhooks, requests, and the invariants every
// accepted request of every HR source holds, and a harness that drives a source
// through the real receiver. It must not import a provider
// package; nothing imports it outside tests.
package sourcestest
