// Package embednats runs a nats-server with JetStream inside the process, for the
// all-in-one mode (`jml run`) and for tests. It owns the server's options, start-up
// checks, the credentials it requires when it listens on a port, and orderly
// shutdown; it must not know about streams or events, which
// belong to package events.
package embednats
