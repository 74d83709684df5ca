// Command natsd is a tiny nats-server with JetStream on disk, built from the
// github.com/nats-io/nats-server/v2 module this repository already depends on.
// The chaos suite (test/chaos) runs it as a separate process it can SIGKILL and
// restart; it is also handy for trying the production split (cmd/webhook,
// cmd/worker) without installing nats-server.
//
//	natsd -port 4222 -store ./nats-data
//	natsd -name n1 -port 4222 -store ./n1 -cluster-name jml -cluster-port 6222 \
//	      -routes nats-route://127.0.0.1:6222,nats-route://127.0.0.1:6223,nats-route://127.0.0.1:6224
//
// It prints one line "natsd ready <client URL>" on stdout once it accepts
// connections with JetStream on, and shuts down cleanly on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "natsd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("natsd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	host := fs.String("host", "127.0.0.1", "client listen host")
	port := fs.Int("port", 4222, "client port (-1 = random)")
	store := fs.String("store", "", "JetStream store directory (required)")
	name := fs.String("name", "natsd", "server name (keep it stable across restarts; unique in a cluster)")
	clusterName := fs.String("cluster-name", "", "cluster name (enables clustering with -cluster-port and -routes)")
	clusterPort := fs.Int("cluster-port", 0, "cluster (route) port")
	routes := fs.String("routes", "", "comma-separated nats-route:// URLs of the cluster's nodes (may include this one)")
	maxMem := fs.Int64("max-mem", 256<<20, "JetStream memory limit in bytes")
	maxFile := fs.Int64("max-file", 4<<30, "JetStream file store limit in bytes")
	logs := fs.Bool("log", false, "log server events to stderr")
	debug := fs.Bool("debug", false, "with -log: debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if *store == "" {
		return errors.New("-store is required")
	}
	if err := os.MkdirAll(*store, 0o700); err != nil {
		return err
	}
	opts := &server.Options{
		ServerName:         *name,
		Host:               *host,
		Port:               *port,
		JetStream:          true,
		StoreDir:           filepath.Clean(*store),
		JetStreamMaxMemory: *maxMem,
		JetStreamMaxStore:  *maxFile,
		NoSigs:             true, // we handle signals: the server would os.Exit otherwise
		NoLog:              !*logs,
		MaxPayload:         8 << 20,
	}
	if *clusterName != "" {
		if *clusterPort <= 0 || *routes == "" {
			return errors.New("-cluster-name needs -cluster-port and -routes")
		}
		opts.Cluster = server.ClusterOpts{Name: *clusterName, Host: *host, Port: *clusterPort}
		opts.Routes = server.RoutesFromStr(*routes)
		if len(opts.Routes) == 0 {
			return fmt.Errorf("-routes %q: no route URL", *routes)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	if *logs {
		ns.ConfigureLogger()
		if *debug {
			opts.Debug = true
			ns.ConfigureLogger()
		}
	}
	ns.Start()
	if !ns.ReadyForConnections(30*time.Second) || !ns.JetStreamEnabled() {
		ns.Shutdown()
		return errors.New("server did not become ready with JetStream (store dir writable and not used by another process?)")
	}
	fmt.Fprintln(stdout, "natsd ready", ns.ClientURL())
	select {
	case <-ctx.Done():
	case <-waitShutdown(ns):
		return errors.New("server shut down")
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

func waitShutdown(ns *server.Server) <-chan struct{} {
	ch := make(chan struct{})
	go func() { ns.WaitForShutdown(); close(ch) }()
	return ch
}
