// Package statetest is the conformance suite every state.Coordinator backend
// runs (the Dex pattern): RunTests(t, newHarness) covers dedupe, lease
// fencing, expiry, races across connections, context cancellation and the
// gocron Locker/Elector adapters; RunProcessTests adds a race between
// separate OS processes for backends that can be shared across them. It
// imports only package state (and events, whose Person a record holds) and
// test helpers, never a backend, so each
// backend's _test.go adopts it in a few lines.
package statetest
