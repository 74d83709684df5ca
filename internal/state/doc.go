// Package state is the contract for coordination between worker replicas:
// dedupe keys (Deduper), per-person leases with fencing tokens (Leaser), the
// Coordinator a backend provides, their sentinel errors, and backend-independent
// gocron adapters (NewLocker, ElectorFor) built on any Leaser; and the
// directory's contract: versioned person records (Directory, ApplyEvent,
// ClampFuture) and identity (IDSpaces: HR ids namespaced by source, the
// generic source and the roster sharing one space; ResolvePerson). Backends live in
// subpackages (redisstate, memstate; jsstate for records) and the shared
// conformance suite in statetest. This package must not import any backend,
// any I/O client (go-redis, nats) or application packages (handlers, sentry);
// from events it uses only the Person type a record holds. Otherwise it depends
// only on the standard library, gocron's interfaces and gowebpki/jcs (RFC 8785
// canonical JSON, the hashed bytes of an evidence record). test/imports
// enforces these rules.
package state
