package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/events"
	"github.com/sentry-jml/sentry-jml/internal/handlers/converge"
	"github.com/sentry-jml/sentry-jml/internal/handlers/resolve"
	"github.com/sentry-jml/sentry-jml/internal/handlers/worker"
	"github.com/sentry-jml/sentry-jml/internal/policy"
	"github.com/sentry-jml/sentry-jml/internal/safety/safetytest"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
	"github.com/sentry-jml/sentry-jml/internal/state/redisstate"
)

type harness struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	sb      *sentrytest.Server
	coord   state.Coordinator
	dir     *jsstate.Directory
	conv    *converge.Converger
	records *jsstate.Records
	cancel  context.CancelFunc
	done    chan error
}

// stop stops the harness's own worker.
func (h *harness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not stop")
	}
}

// worker starts another replica on the same consumer with its own leaser
// wrapper, a short lease and a short ack wait.
func (h *harness) worker(t *testing.T, owner string, leases state.Leaser, wrap func(worker.Converger) worker.Converger) *worker.Worker {
	t.Helper()
	var cv worker.Converger = h.conv
	if wrap != nil {
		cv = wrap(cv)
	}
	w, err := worker.New(worker.Options{JS: h.js, Dedupe: h.coord, Leases: leases, Directory: h.dir, Converger: cv, Due: h.records.Due,
		Owner: owner, LeaseTTL: 600 * time.Millisecond, AckWait: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := w.Run(ctx)
		if err != nil {
			t.Errorf("worker %s: %v", owner, err)
		}
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
		}
	})
	return w
}

func start(t *testing.T) *harness {
	t.Helper()
	return startPolicy(t, policy.Default())
}

func startPolicy(t *testing.T, pol policy.Policy) *harness {
	t.Helper()
	return startWith(t, pol, nil, nil)
}

func startWith(t *testing.T, pol policy.Policy, res worker.Resolver, unres worker.UnresolvedSink) *harness {
	t.Helper()
	return startFull(t, pol, res, unres, nil)
}

func startWrapped(t *testing.T, wrap func(worker.Converger) worker.Converger) *harness {
	t.Helper()
	return startFull(t, policy.Default(), nil, nil, wrap)
}

func startFull(t *testing.T, pol policy.Policy, res worker.Resolver, unres worker.UnresolvedSink, wrap func(worker.Converger) worker.Converger) *harness {
	t.Helper()
	return startHarness(t, pol, res, unres, wrap, nil)
}

// startHarness is startFull with a last say on the worker's options.
func startHarness(t *testing.T, pol policy.Policy, res worker.Resolver, unres worker.UnresolvedSink, wrap func(worker.Converger) worker.Converger,
	tune func(*worker.Options)) *harness {
	t.Helper()
	_, nc, js := natstest.Run(t)
	sb := sentrytest.NewServer(t, sentrytest.Options{RateLimit: -1})
	client, err := sentry.New(sentry.Config{BaseURL: sb.URL, Org: "acme", Token: "sandbox", AllowAnyToken: true, Gate: &safetytest.Gate{}, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	me, err := client.Me(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	records, err := jsstate.Open(context.Background(), js, jsstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := records.Directory
	conv, err := converge.New(converge.Options{Sentry: client, SelfMemberID: me.ID, SelfRole: me.OrgRole, Policy: func() policy.Policy { return pol },
		Snapshots: records.Snapshots})
	if err != nil {
		t.Fatal(err)
	}
	// Redis, as deployed: the worker checks and records dedupe with the lease.
	coord, err := redisstate.Open(context.Background(), redisstate.Options{URL: redisURL(), Prefix: fmt.Sprintf("jmltest:worker:%d:", time.Now().UnixNano())})
	if err != nil {
		t.Fatalf("redis at %s: %v", redisURL(), err)
	}
	t.Cleanup(func() { _ = coord.Close() })
	var cv worker.Converger = conv
	if wrap != nil {
		cv = wrap(conv)
	}
	wo := worker.Options{JS: js, Dedupe: coord, Leases: coord, Directory: dir, Converger: cv, Owner: "test", MaxPermanentDeliveries: 2,
		Resolver: res, Unresolved: unres, ResolveErrors: struct{ NotConfigured, Unknown error }{resolve.ErrNotConfigured, resolve.ErrUnresolvable}, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if tune != nil {
		tune(&wo)
	}
	w, err := worker.New(wo)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	h := &harness{nc: nc, js: js, sb: sb, coord: coord, dir: dir, conv: conv, records: records, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- <-done }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
		}
	})
	return h
}

func (h *harness) publish(t *testing.T, id, email string) {
	t.Helper()
	ev := events.Event{ID: id, Source: "generic", Type: events.Leaver, OccurredAt: time.Now().UTC(), ReceivedAt: time.Now().UTC(),
		Person: events.Person{Email: email, Status: events.Terminated}}
	if _, err := events.NewPublisher(h.js, nil, nil).Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) publishEvent(t *testing.T, ev events.Event) {
	t.Helper()
	if _, err := events.NewPublisher(h.js, nil, nil).Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) dlq(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	st, err := h.js.Stream(context.Background(), events.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(context.Background())
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err == nil {
			out = append(out, m)
		}
	}
	return out
}

const memberPattern = "/api/0/organizations/{organization_id_or_slug}/members/{member_id}/"

func TestUndecodableGoesToDLQAtOnce(t *testing.T) {
	h := start(t)
	m := nats.NewMsg("jml.events.generic.leaver")
	m.Data = []byte("{not an event")
	if _, err := h.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the message is dead-lettered", func() bool { return len(h.dlq(t)) == 1 })
	d := h.dlq(t)[0]
	if d.Subject != "jml.dlq.generic.leaver" || string(d.Data) != "{not an event" || d.Header.Get(events.HeaderDeliveries) != "1" ||
		!strings.Contains(d.Header.Get(events.HeaderError), "decode event") {
		t.Fatalf("dead letter %s %q %v", d.Subject, d.Data, d.Header)
	}
}

func TestTransientFailuresAreRetriedNotDeadLettered(t *testing.T) {
	h := start(t)
	const who = "jane.doe@acme.test"
	h.sb.InjectFault(sentrytest.Fault{Pattern: memberPattern, Method: "DELETE", Status: 503, Count: 3})
	h.publish(t, "msg_transient", who)
	eventually(t, who+" is removed after the outage", func() bool { _, ok := h.sb.Member(who); return !ok })
	if n := len(h.dlq(t)); n != 0 {
		t.Fatalf("%d dead letters for a transient failure", n)
	}
	if n := h.sb.Stats().Mutations["member.remove"][who]; n != 1 {
		t.Fatalf("removed %d times", n)
	}
}

func TestPermanentFailureIsDeadLetteredAfterRetries(t *testing.T) {
	h := start(t)
	const who = "jane.doe@acme.test"
	h.sb.InjectFault(sentrytest.Fault{Pattern: memberPattern, Method: "DELETE", Status: 400, Body: `{"detail":"Something odd."}`})
	h.publish(t, "msg_permanent", who)
	eventually(t, "the event is dead-lettered", func() bool { return len(h.dlq(t)) == 1 })
	d := h.dlq(t)[0]
	if d.Header.Get(events.HeaderDeliveries) != "2" || !strings.Contains(d.Header.Get(events.HeaderError), "Something odd") {
		t.Fatalf("dead letter headers %v", d.Header)
	}
	if _, ok := h.sb.Member(who); !ok {
		t.Fatal("member removed despite the failures")
	}
}

func TestPersonLeaseHeldElsewhereDefersWork(t *testing.T) {
	h := start(t)
	const who = "jane.doe@acme.test"
	other, err := h.coord.Acquire(context.Background(), "person:email:"+who, "another-replica", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	h.publish(t, "msg_busy", who)
	time.Sleep(700 * time.Millisecond) // several 250 ms retry rounds while the other replica holds the lease
	if _, ok := h.sb.Member(who); !ok {
		t.Fatal("member removed while another replica held the person's lease")
	}
	if err := h.coord.Release(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	eventually(t, who+" is removed once the lease is free", func() bool { _, ok := h.sb.Member(who); return !ok })
}

func redisURL() string {
	if u := os.Getenv("JML_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379"
}
