// Package wire builds the daemon's three roles from parsed configuration, in
// one place for every process: the webhook receiver (cmd/webhook and
// `jml run`), the worker with its scheduler (cmd/worker through
// cmd/internal/workerproc, and `jml run`), and the admin API in front of the
// worker. The caller chooses the infrastructure: the all-in-one passes an
// embedded NATS server, in-process coordination and, without a Sentry
// configured, the sandbox; the split processes pass their JML_NATS_URL
// connection and Redis. Configuration is read by cmd/internal/config only;
// wire receives it as values.
//
// Import rules: wire may import cmd/internal/config and internal/...; nothing
// under internal/ imports it.
package wire
