// Command jml is the all-in-one daemon (`jml run`: embedded NATS with JetStream on
// disk, receiver, admin API, worker, scheduler, embedded coordination, and the
// Sentry sandbox when no JML_SENTRY_* variable is set), the standalone sandbox
// (`jml sandbox`), and the operator CLI (`jml send-sample`, `jml doctor`, …). It
// owns configuration parsing and wiring only; behaviour lives in internal/.
//
// The CLI is a table of commands (cli.go): each is a leaf function
// func(ctx, args, stdout, stderr) error parsing its own flag.FlagSet, named by
// one or more words. dispatch answers --help/-h for every command before any
// leaf runs, and maps errors to the exit status (0 ok, 1 error, 2 usage, 3
// halted, 4 changes pending, 5 pause unconfirmed). The standard flag package
// is kept (not cobra or kong) because it accepts both -name and --name, which
// existing command lines use (`jml sandbox -addr`).
package main
