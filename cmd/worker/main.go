// Command worker is the worker process of the production split: it consumes
// JML_EVENTS from JetStream (JML_NATS_URL), coordinates with other replicas
// through Redis (JML_REDIS_URL), converges people in Sentry and runs the
// scheduled jobs. It serves /healthz, /readyz and /metrics on JML_ADMIN_ADDR.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sentry-jml/sentry-jml/cmd/internal/workerproc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := workerproc.Run(ctx, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}
