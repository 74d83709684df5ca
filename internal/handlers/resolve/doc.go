// Package resolve re-reads a person from the HR provider's API when a webhook
// was thin (ids, no email or status) or unsigned: one Resolver per provider
// (BambooHR, HiBob, Gusto, Personio, Deel, Rippling) behind a common interface,
// and BySource to pick one by event source. It is called by the worker, never by
// the receiver, which must answer at JetStream speed. It must not import the
// receiver, NATS, Sentry or configuration; resolvetest holds the provider API
// simulators its tests run against.
package resolve
