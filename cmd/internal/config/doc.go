// Package config reads the JML_* environment (envconfig) for the three commands:
// the shared variables, the `<NAME>_FILE` form of every secret, the lists of active
// secrets separated by commas or newlines, and the rule that a partially set
// JML_SENTRY_* group is an error rather than a fallback to the sandbox. It also
// resolves the admin API's credentials (admin.go): the shared and named operator
// tokens, the token generated into the data dir on a loopback address, and the
// errors that keep the admin API from ever running without one. Only cmd/* may
// import it; internal packages receive plain values.
package config
