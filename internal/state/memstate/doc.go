// Package memstate is the embedded, in-process state.Coordinator: dedupe
// records and leases kept in maps behind a mutex, with time taken from an
// injected clockwork.Clock so tests can drive expiry. It is for single-process
// deployments and tests; it gives no coordination between processes. It must
// not import other state backends (redisstate, jsstate) or any I/O client,
// and must not import application packages.
package memstate
