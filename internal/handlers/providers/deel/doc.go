// Package deel is the Deel provider: its webhook source (Source:
// x-deel-signature, contract events) and its API reader (Resolver: people, and
// contracts for a ContractPrefix reference); deeltest simulates that API for
// tests. It must not publish, touch Sentry or read configuration, and must not
// import the registry (internal/handlers/providers), another provider's package
// or the receiver.
package deel
