// Package app assembles the daemon's parts — receiver, worker, scheduler, admin
// API, readiness — from dependencies that cmd/* has already built from
// configuration. It holds the wiring shared by `jml run`, cmd/webhook and
// cmd/worker so the all-in-one and the split processes run the same code. It
// reads no environment.
package app
