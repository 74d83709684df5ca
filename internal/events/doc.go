// Package events owns the normalized lifecycle event and person types, the strict
// generic event schema, the NATS names (streams, subjects, headers), the JSON codec
// and JetStream publishing with W3C trace context in message headers. Every webhook
// source produces an Event; every worker consumes one. It must not import webhook
// sources, the Sentry client or the state backends.
package events
