// Package natsconn holds what every NATS client connection of the daemon
// shares: reconnect forever with a capped, jittered backoff, log each
// disconnect, reconnect and close with its reason (never the credentials),
// and the liveness rule. A connection the server closed for good (a protocol
// error: nats.go does not reconnect after one) stays closed, so Live reports
// it and /healthz fails, and an orchestrator restarts the process.
package natsconn

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
)

// Reconnect backoff: the first retry after MinReconnectWait, doubling up to
// MaxReconnectWait, each with up to half of it again as jitter (so replicas
// that lost the same server do not come back in lockstep).
const (
	MinReconnectWait = 250 * time.Millisecond
	MaxReconnectWait = 5 * time.Second
)

// Config configures Options.
type Config struct {
	// Name is the connection name the server shows (nats.Name).
	Name string
	// Logger receives the connection's events (nil: discarded).
	Logger *slog.Logger
	// OnClosed runs when the connection is closed with an error (the server
	// closed it for good), not on a deliberate Close. Optional.
	OnClosed func(err error)
}

// Options returns the connection options: reconnect forever with backoff and
// jitter, and the event handlers. Options given after these override them.
func Options(c Config) []nats.Option {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("nats_connection", c.Name)
	return []nats.Option{
		nats.Name(c.Name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(ReconnectDelay),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // the closed handler says why
			}
			log.Warn("nats disconnected; reconnecting", "err", errString(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted(), "reconnects", nc.Stats().Reconnects)
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Debug("nats reconnect attempt failed", "err", errString(err))
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			err := nc.LastError()
			if err == nil {
				log.Info("nats connection closed")
				return
			}
			log.Error("nats connection closed for good; liveness (/healthz) fails until the process restarts", "err", err.Error())
			if c.OnClosed != nil {
				c.OnClosed(err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("nats asynchronous error", "err", errString(err), "subject", bounded(sub.Subject))
				return
			}
			log.Warn("nats asynchronous error", "err", errString(err))
		}),
	}
}

// ReconnectDelay is the wait before reconnect round attempts (1-based):
// MinReconnectWait doubled per attempt, capped at MaxReconnectWait, plus up
// to half of it as jitter.
func ReconnectDelay(attempts int) time.Duration {
	d := MinReconnectWait
	for i := 1; i < attempts && d < MaxReconnectWait; i++ {
		d *= 2
	}
	d = min(d, MaxReconnectWait)
	return d + rand.N(d/2+1)
}

// Live reports a connection closed for good (nil while it is connected or
// reconnecting): the liveness check of every process holding one.
func Live(nc *nats.Conn) error {
	if nc == nil || !nc.IsClosed() {
		return nil
	}
	if err := nc.LastError(); err != nil {
		return fmt.Errorf("nats: connection closed for good: %w", err)
	}
	return fmt.Errorf("nats: connection closed")
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// bounded keeps a subject in a log line to 256 bytes.
func bounded(s string) string {
	if len(s) <= 256 {
		return s
	}
	return s[:256] + "…"
}
