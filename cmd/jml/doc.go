// Command jml is the all-in-one daemon (`jml run`: embedded NATS with JetStream on
// disk, receiver, admin API, worker, scheduler, embedded coordination, and the
// Sentry sandbox when no JML_SENTRY_* variable is set), the standalone sandbox
// (`jml sandbox`), and the operator CLI (`jml send-sample`, `jml doctor`, …). It
// owns configuration parsing and wiring only; behaviour lives in internal/.
package main
