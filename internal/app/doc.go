// Package app assembles the daemon's parts — receiver, worker, scheduler, admin
// API, readiness — from dependencies that cmd/* has already built from
// configuration. It holds the wiring shared by `jml run`, cmd/webhook and
// cmd/worker so the all-in-one and the split processes run the same code. It
// reads no environment. The admin API fails closed: every /v1 route sits behind
// one guard (bearer token of a configured operator, no browser, a loopback Host
// on a loopback listener), and the operator it names is the recorded actor.
// Long operator work (reconcile, plan --all, access review, roster import)
// runs as in-process jobs (jobs.go) that outlive the request which started
// them, can be followed and cancelled through /v1/jobs, and are forgotten on
// restart; operations.go lists runs, future-dated changes and unresolved
// events and acts on them with the operator recorded.
package app
