// Package signature verifies webhook signatures: the Standard Webhooks scheme
// (HMAC-SHA256 over "id.timestamp.body", several signatures per header, several
// active secrets during rotation, a symmetric time tolerance) and the HMAC
// variants HR providers use. It owns only the cryptography and header parsing; it
// must not import the receiver, NATS or any provider's payload types, so it stays
// small enough to fuzz in isolation.
package signature
