// Package receiver is the HTTP front door: POST /hooks/<source> reads the body
// under a size limit, lets the source verify and parse it, publishes the events to
// JetStream and answers 202 only after the JetStream ack (503 when NATS cannot
// take them, so the sender retries). It also serves /healthz and /readyz; its
// metrics are served on the process's admin listener, never on this public
// port. It must not touch Sentry or the state backends.
package receiver
