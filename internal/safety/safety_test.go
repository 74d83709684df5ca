package safety_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sentry-jml/sentry-jml/internal/embednats/natstest"
	"github.com/sentry-jml/sentry-jml/internal/safety"
	"github.com/sentry-jml/sentry-jml/internal/safety/safetytest"
	"github.com/sentry-jml/sentry-jml/internal/sentry"
	"github.com/sentry-jml/sentry-jml/internal/sentry/sentrytest"
	"github.com/sentry-jml/sentry-jml/internal/state/jsstate"
)

// knownMutations are the client methods that change Sentry today. The test
// finds mutating methods by calling every method; this list only makes sure
// the discovery cannot pass by finding none.
var knownMutations = []string{"DeleteMember", "InviteMember", "UpdateMemberRole", "ReinviteMember", "AddMemberToTeam",
	"RemoveMemberFromTeam", "SetTeamRole", "SCIMCreateUser", "SCIMSetUserRole", "SCIMDeactivateUser", "SCIMDeleteUser",
	"CreateTeam", "DeleteTeam", "AddProjectTeam", "RemoveProjectTeam", "DeleteOrgAuthToken"}

// removals are the methods the brakes hold.
var removals = map[string]bool{"DeleteMember": true, "SCIMDeleteUser": true, "SCIMDeactivateUser": true}

type rig struct {
	sb      *sentrytest.Server
	js      jetstream.JetStream
	control *jsstate.Control
	gate    *safety.Gate
}

// startGate runs a real gate (id) on js and waits until it has read the switches.
func startGate(t *testing.T, js jetstream.JetStream, id string, limit int) (*safety.Gate, *jsstate.Control) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	control, err := jsstate.OpenControl(ctx, js, jsstate.Options{}, func() int { return limit }, nil)
	if err != nil {
		t.Fatal(err)
	}
	presence, err := jsstate.OpenPresence(ctx, js, jsstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := safety.New(safety.Options{Control: control, Presence: presence, ID: id, Beat: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the gate reads the switches", func() bool { _, _, ok := g.View(); return ok })
	return g, control
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newRig(t *testing.T, limit int) *rig {
	_, _, js := natstest.Run(t)
	g, control := startGate(t, js, "replica-1", limit)
	sb := sentrytest.NewServer(t, sentrytest.Options{RateLimit: -1, SCIMToken: "scim"})
	return &rig{sb: sb, js: js, control: control, gate: g}
}

func client(t *testing.T, url string, gate sentry.Gate) *sentry.Client {
	t.Helper()
	c, err := sentry.New(sentry.Config{BaseURL: url, Org: "acme", Token: "sandbox", SCIMToken: "scim", AllowAnyToken: true,
		MaxRetries: -1, Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// leased is a context that holds a (fake, always valid) lease.
func leased() context.Context {
	return sentry.WithPreSend(context.Background(), func(context.Context) error { return nil })
}

// call invokes client method m with placeholder arguments and returns its error.
func call(ctx context.Context, c *sentry.Client, m reflect.Method) error {
	ft := m.Type
	args := []reflect.Value{reflect.ValueOf(c)}
	for i := 1; i < ft.NumIn(); i++ {
		pt := ft.In(i)
		switch {
		case pt == reflect.TypeFor[context.Context]():
			args = append(args, reflect.ValueOf(ctx))
		case pt.Kind() == reflect.String:
			args = append(args, reflect.ValueOf("probe-1").Convert(pt))
		case pt == reflect.TypeFor[sentry.InviteRequest]():
			args = append(args, reflect.ValueOf(sentry.InviteRequest{Email: "gate-probe@acme.test", OrgRole: "member"}))
		case pt.Kind() == reflect.Int:
			args = append(args, reflect.ValueOf(1).Convert(pt))
		default:
			args = append(args, reflect.Zero(pt))
		}
	}
	out := m.Func.Call(args)
	for _, v := range out {
		if v.Type() == reflect.TypeFor[error]() && !v.IsNil() {
			return v.Interface().(error)
		}
	}
	return nil
}

// methods are the client's exported methods that take a context (its API calls).
func methods() []reflect.Method {
	var out []reflect.Method
	t := reflect.TypeFor[*sentry.Client]()
	for i := range t.NumMethod() {
		m := t.Method(i)
		if m.Type.NumIn() >= 2 && m.Type.In(1) == reflect.TypeFor[context.Context]() {
			out = append(out, m)
		}
	}
	return out
}

func nonGET(log []sentrytest.LoggedRequest) []sentrytest.LoggedRequest {
	var out []sentrytest.LoggedRequest
	for _, r := range log {
		if r.Method != http.MethodGet && strings.HasPrefix(r.Path, "/api/0/") {
			out = append(out, r)
		}
	}
	return out
}

// Every method of the Sentry client that changes Sentry asks the gate first,
// and is refused unsent while paused; removals are refused unsent while the
// brakes hold them. The mutating methods are found by calling every method,
// so one added later is covered without editing this test.
func TestEveryMutationPassesTheGate(t *testing.T) {
	r := newRig(t, 1)

	// Discovery: which methods ask the gate (a recording gate admits all).
	rec := &safetytest.Gate{}
	c := client(t, r.sb.URL, rec)
	mutating := map[string]bool{}
	for _, m := range methods() {
		before := len(rec.Admitted())
		logBefore := len(nonGET(r.sb.RequestLog()))
		_ = call(leased(), c, m)
		admitted := len(rec.Admitted()) - before
		sent := len(nonGET(r.sb.RequestLog())) - logBefore
		if admitted > 0 {
			mutating[m.Name] = true
		}
		if sent > admitted {
			t.Errorf("%s sent %d mutating request(s) but asked the gate %d time(s)", m.Name, sent, admitted)
		}
	}
	for _, name := range knownMutations {
		if !mutating[name] {
			t.Errorf("%s did not ask the gate", name)
		}
	}
	for name := range removals {
		if !mutating[name] {
			t.Errorf("removal %s did not ask the gate", name)
		}
	}

	// No gate at all: every mutation is refused unsent.
	bare := client(t, r.sb.URL, nil)
	start := len(nonGET(r.sb.RequestLog()))
	for _, m := range methods() {
		if !mutating[m.Name] {
			continue
		}
		if err := call(leased(), bare, m); !errors.Is(err, sentry.ErrRefused) {
			t.Errorf("%s without a gate: %v, want a refusal", m.Name, err)
		}
	}
	if n := len(nonGET(r.sb.RequestLog())) - start; n != 0 {
		t.Fatalf("a client without a gate sent %d mutating requests", n)
	}

	// Paused: the real gate refuses every mutation, and nothing is sent.
	gated := client(t, r.sb.URL, r.gate)
	res, err := r.gate.Pause(context.Background(), "test", 5*time.Second)
	if err != nil || !res.Complete {
		t.Fatalf("pause: %+v %v", res, err)
	}
	start = len(nonGET(r.sb.RequestLog()))
	for _, m := range methods() {
		err := call(leased(), gated, m)
		if !mutating[m.Name] {
			continue
		}
		rf, ok := sentry.RefusalOf(err)
		if !ok || rf.Kind != sentry.RefusedPaused {
			t.Errorf("%s while paused: %v, want a pause refusal", m.Name, err)
		}
	}
	if sent := nonGET(r.sb.RequestLog())[start:]; len(sent) != 0 {
		t.Fatalf("mutations sent while paused: %+v", sent)
	}
	if _, err := r.gate.Resume(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the gate sees the resume", func() bool { v, _, _ := r.gate.View(); return !v.Paused })

	// Brakes halted (limit 1: the second counted removal halts them): every
	// removal is refused unsent, other mutations go on.
	for range 2 {
		if _, err := r.control.Admit(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the gate sees the halt", func() bool { v, _, _ := r.gate.View(); return v.BrakesHalted })
	for _, m := range methods() {
		if !mutating[m.Name] {
			continue
		}
		before := len(nonGET(r.sb.RequestLog()))
		err := call(leased(), gated, m)
		sent := len(nonGET(r.sb.RequestLog())) - before
		rf, refused := sentry.RefusalOf(err)
		switch {
		case removals[m.Name] && (!refused || rf.Kind != sentry.RefusedBrakes || sent != 0):
			t.Errorf("removal %s with halted brakes: %v (%d sent), want a brake refusal, nothing sent", m.Name, err, sent)
		case !removals[m.Name] && refused:
			t.Errorf("%s (not a removal) refused by halted brakes: %v", m.Name, err)
		}
	}
	// An approved reconcile plan's removals are held too.
	if err := gated.DeleteMember(safety.WithApproved(leased(), "rc-1"), "probe-1"); !errors.Is(err, sentry.ErrRefused) {
		t.Fatalf("approved removal with halted brakes: %v, want a refusal", err)
	}
}

// A mutation outside a lease is refused (the lease is part of the gate).
func TestGateRequiresALease(t *testing.T) {
	r := newRig(t, 30)
	c := client(t, r.sb.URL, r.gate)
	before := len(nonGET(r.sb.RequestLog()))
	_, err := c.CreateTeam(context.Background(), "no-lease", "No lease")
	if rf, ok := sentry.RefusalOf(err); !ok || rf.Kind != sentry.RefusedLease {
		t.Fatalf("mutation without a lease: %v, want a lease refusal", err)
	}
	lost := errors.New("lease lost")
	ctx := sentry.WithPreSend(context.Background(), func(context.Context) error { return lost })
	if _, err := c.CreateTeam(ctx, "lost-lease", "Lost"); !errors.Is(err, lost) {
		t.Fatalf("mutation whose lease check fails: %v, want the check's error", err)
	}
	if n := len(nonGET(r.sb.RequestLog())) - before; n != 0 {
		t.Fatalf("%d mutations sent without a lease", n)
	}
}

// Removals of an operator-approved plan are not counted in the brakes'
// window; every other removal is, on the gate's path.
func TestGateCountsRemovals(t *testing.T) {
	r := newRig(t, 2)
	c := client(t, r.sb.URL, r.gate)
	members := r.sb.Members()
	var ids []string
	for _, m := range members {
		if !strings.HasPrefix(m.Email, "jml-bot") && m.OrgRole == "member" && !m.Flags["idp:provisioned"] && !m.Flags["idp:role-restricted"] {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) < 4 {
		t.Fatalf("seed has %d plain members, want 4", len(ids))
	}
	for _, id := range ids[:2] {
		if err := c.DeleteMember(safety.WithApproved(leased(), "rc-1"), id); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := r.control.State(context.Background()); st.Removals != 0 {
		t.Fatalf("approved removals counted: %+v", st)
	}
	for _, id := range ids[2:4] {
		if err := c.DeleteMember(leased(), id); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := r.control.State(context.Background()); st.Removals != 2 || st.BrakesHalted {
		t.Fatalf("after two counted removals: %+v", st)
	}
	err := c.DeleteMember(leased(), "probe-2")
	if rf, ok := sentry.RefusalOf(err); !ok || rf.Kind != sentry.RefusedBrakes {
		t.Fatalf("third removal within 60 s (limit 2): %v, want the brakes", err)
	}
}

// jml pause answers once every live replica enforces it, and only after the
// mutations they had in flight have finished; a replica that does not
// acknowledge is named.
func TestPauseWaitsForEveryReplicaAndInFlight(t *testing.T) {
	_, _, js := natstest.Run(t)
	g1, _ := startGate(t, js, "replica-1", 30)
	g2, _ := startGate(t, js, "replica-2", 30)
	// A slow Sentry: each request takes 400 ms; record when it finished.
	sb := sentrytest.New(sentrytest.Options{RateLimit: -1})
	var mu sync.Mutex
	var finished []time.Time
	srv := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			time.Sleep(400 * time.Millisecond)
		}
		sb.ServeHTTP(w, r)
		if r.Method != http.MethodGet {
			mu.Lock()
			finished = append(finished, time.Now())
			mu.Unlock()
		}
	}))
	c2 := client(t, srv, g2)
	waitFor(t, "both replicas are live", func() bool { return g1.LiveReplicas() == 2 && g2.LiveReplicas() == 2 })

	var inflight atomic.Int32
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			inflight.Add(1)
			_, err := c2.CreateTeam(leased(), "slow-"+string(rune('a'+i)), "Slow")
			errs <- err
		}()
	}
	waitFor(t, "mutations are in flight", func() bool { return inflight.Load() == 8 })
	time.Sleep(100 * time.Millisecond)
	res, err := g1.Pause(context.Background(), "alice", 5*time.Second)
	answered := time.Now()
	if err != nil || !res.Complete || len(res.Missing) != 0 || len(res.Acknowledged) != 2 {
		t.Fatalf("pause: %+v %v", res, err)
	}
	mu.Lock()
	for _, f := range finished {
		if f.After(answered) {
			t.Errorf("a mutation finished %v after the pause answered", f.Sub(answered))
		}
	}
	done := len(finished)
	mu.Unlock()
	refused := 0
	for range 8 {
		if err := <-errs; errors.Is(err, sentry.ErrRefused) {
			refused++
		}
	}
	if done+refused != 8 {
		t.Fatalf("%d finished and %d refused of 8", done, refused)
	}
	mu.Lock()
	if len(finished) != done {
		t.Fatalf("%d mutations reached Sentry after the pause answered", len(finished)-done)
	}
	mu.Unlock()

	// A replica that heartbeats but never applies the pause is named.
	presence, err := jsstate.OpenPresence(context.Background(), js, jsstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stuck := jsstate.Beat{ID: "stuck-replica", Role: "worker", At: time.Now().UTC()}
	if err := presence.Beat(context.Background(), stuck); err != nil {
		t.Fatal(err)
	}
	if _, err := g1.Resume(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	res, err = g1.Pause(context.Background(), "alice", 500*time.Millisecond)
	if err != nil || res.Complete || len(res.Missing) != 1 || res.Missing[0] != "stuck-replica" {
		t.Fatalf("pause with a replica that does not acknowledge: %+v %v", res, err)
	}
}

func httpServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// Production code never links the permissive test gate.
func TestProductionNeverImportsSafetytest(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/sentry-jml/sentry-jml/cmd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "github.com/sentry-jml/sentry-jml/internal/safety\n") {
		t.Fatal("go list -deps did not list the safety package: the check below would prove nothing")
	}
	if strings.Contains(string(out), "internal/safety/safetytest") {
		t.Fatal("a command links internal/safety/safetytest, the gate that admits everything")
	}
}
