package jsstate_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// startCluster runs a 3-node JetStream cluster in this process.
func startCluster(t *testing.T) []*server.Server {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	nodes := make([]*server.Server, 3)
	for i := range nodes {
		ns, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "jml", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		nodes[i] = ns
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	}
	for _, ns := range nodes {
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s not ready", ns.Name())
		}
	}
	waitFor(t, 15*time.Second, "a JetStream meta leader", func() error {
		for _, ns := range nodes {
			if ns.JetStreamIsLeader() {
				return nil
			}
		}
		return errors.New("no leader")
	})
	return nodes
}

func waitFor(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterR3SurvivesANode creates every bucket and stream with three
// replicas, writes records, shuts down the meta leader and keeps reading and
// writing through the two remaining nodes.
func TestClusterR3SurvivesANode(t *testing.T) {
	nodes := startCluster(t)
	var urls []string
	for _, ns := range nodes {
		urls = append(urls, ns.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	o := jsstate.Options{Replicas: 3}
	var r *jsstate.Records
	waitFor(t, 20*time.Second, "Open with 3 replicas", func() error {
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err = jsstate.Open(octx, js, o)
		return err
	})
	for _, name := range []string{"KV_" + jsstate.BucketDirectory, "KV_" + jsstate.BucketLinks, "KV_" + jsstate.BucketSnapshots,
		"KV_" + jsstate.BucketDue, "KV_" + jsstate.BucketRuns, jsstate.StreamEvidence} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.Replicas; got != 3 {
			t.Fatalf("%s has %d replicas, want 3", name, got)
		}
	}

	write := func(i int) error {
		key := fmt.Sprintf("id:E-%d", i)
		if _, _, err := r.Directory.Apply(ctx, key, events.Person{ID: fmt.Sprint(i), Email: fmt.Sprintf("p%d@acme.com", i), Status: events.Active},
			state.Version{OccurredAt: t0, Source: "generic", Seq: uint64(i)}, "e"); err != nil {
			return err
		}
		if err := r.Directory.Link(ctx, "okta", fmt.Sprintf("00u%d", i), key); err != nil {
			return err
		}
		if _, err := r.Evidence.Append(ctx, state.Evidence{PersonKey: key, Kind: state.EvidenceConvergence}); err != nil {
			return err
		}
		if _, err := r.Due.Schedule(ctx, due(fmt.Sprintf("d%d", i), key, "status", t0, t0)); err != nil {
			return err
		}
		return r.Runs.Put(ctx, state.ReconcileRun{ID: fmt.Sprintf("run-%d", i), Status: state.RunHalted, StartedAt: t0, ExpiresAt: time.Now().Add(time.Hour)})
	}
	for i := range 5 {
		if err := write(i); err != nil {
			t.Fatal(err)
		}
	}

	// Shut down the meta leader.
	var victim *server.Server
	for _, ns := range nodes {
		if ns.JetStreamIsLeader() {
			victim = ns
		}
	}
	if victim == nil {
		t.Fatal("no meta leader")
	}
	t.Logf("shutting down %s (meta leader)", victim.Name())
	victim.Shutdown()
	victim.WaitForShutdown()

	// Everything written before is still there, and writes go on.
	waitFor(t, 20*time.Second, "the directory after losing a node", func() error {
		_, err := r.Directory.Get(ctx, "id:E-4")
		return err
	})
	waitFor(t, 20*time.Second, "writes after losing a node", func() error { return write(5) })
	for i := 6; i < 10; i++ {
		if err := write(i); err != nil {
			t.Fatalf("write %d after losing a node: %v", i, err)
		}
	}
	if got := len(collect(t, r.Directory.List(ctx))); got != 10 {
		t.Fatalf("directory lists %d records, want 10", got)
	}
	if k, err := r.Directory.Resolve(ctx, "okta", "00u3"); err != nil || k != "id:E-3" {
		t.Fatalf("Resolve = %q, %v", k, err)
	}
	if err := state.VerifyChainFrom("", r.Evidence.Range(ctx, time.Time{}, time.Time{})); err != nil {
		t.Fatalf("evidence chain across the failover: %v", err)
	}
	if got := len(collect(t, r.Evidence.Range(ctx, time.Time{}, time.Time{}))); got < 10 {
		t.Fatalf("%d evidence records, want at least 10", got)
	}
	popped, err := r.Due.PopDue(ctx, t0, 100)
	if err != nil || len(popped) != 10 {
		t.Fatalf("PopDue = %d, %v; want 10", len(popped), err)
	}
	if _, err := r.Runs.Approve(ctx, "run-2", "op", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Runs.Approve(ctx, "run-2", "op2", time.Now()); !errors.Is(err, state.ErrRunNotHalted) {
		t.Fatalf("second approval: %v", err)
	}
}
