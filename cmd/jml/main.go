package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `jml — joiner/mover/leaver automation for Sentry

Usage:
  jml run                         run everything in one process (embedded NATS, sandbox Sentry unless JML_SENTRY_* is set)
  jml sandbox [-addr A] [-seed F] serve the Sentry API sandbox alone
  jml send-sample TYPE --email E  sign and send a sample generic event (TYPE: leaver, joiner, mover, suspend, rehire, update)
  jml doctor                      check the configuration, NATS, the coordination store and the Sentry token
  jml version

Configuration is read from JML_* environment variables; see README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "jml:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("unknown command; run `jml help`")

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "sandbox":
		return cmdSandbox(ctx, args[1:], stdout, stderr)
	case "send-sample":
		return cmdSendSample(ctx, args[1:], stdout, stderr)
	case "doctor":
		return cmdDoctor(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "jml", version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%q: %w", args[0], errUsage)
}
