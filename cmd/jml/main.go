package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sentry-jml/sentry-jml/cmd/internal/workerproc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && err.Error() != "" {
		fmt.Fprintln(os.Stderr, "jml:", err)
	}
	os.Exit(exitCode(err))
}

func cmdWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("worker: unexpected argument %q", fs.Arg(0))
	}
	return workerproc.Run(ctx, stderr)
}

func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return usageErrorf("version: unexpected argument %q", args[0])
	}
	fmt.Fprintln(stdout, "jml", version())
	return nil
}
