package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runCLI runs a jml subcommand against sys (found through JML_ADMIN_ADDR) with
// --json (added when missing) and decodes its output.
func runCLI(t *testing.T, sys *system, args ...string) (map[string]any, error) {
	t.Helper()
	if !slices.Contains(args, "--json") {
		args = append(slices.Clone(args), "--json")
	}
	t.Setenv("JML_ADMIN_ADDR", sys.adminAddr)
	t.Setenv("JML_DATA_DIR", sys.cfg.DataDir)
	var out, errb bytes.Buffer
	err := dispatch(context.Background(), args, &out, &errb)
	if err != nil {
		// A command that answered and then exits with a status of its own
		// (3 halted, 4 changes, 5 pause unconfirmed) printed its JSON.
		var v map[string]any
		if code := exitCode(err); code >= exitHalted && json.Unmarshal(out.Bytes(), &v) == nil {
			return v, err
		}
		return nil, err
	}
	var v map[string]any
	if jerr := json.Unmarshal(out.Bytes(), &v); jerr != nil {
		t.Fatalf("%v: output is not one JSON object: %v\n%s", args, jerr, out.String())
	}
	return v, nil
}

func TestOperatorCLI(t *testing.T) {
	sys := mustRunMain(t, "")
	sb := sys.sandbox
	c := newSignedClient(t, sys)

	// plan for a person the directory does not know yet: actual read from
	// Sentry, nothing to do.
	v, err := runCLI(t, sys, "plan", "--email", "jane.doe@acme.test", "--json")
	if err != nil {
		t.Fatal(err)
	}
	actual, _ := v["actual"].(map[string]any)
	if v["email"] != "jane.doe@acme.test" || actual["org_role"] != "member" || len(v["steps"].([]any)) != 0 {
		t.Fatalf("plan before any event: %v", v)
	}

	// Pause: a leaver is accepted and recorded, but Sentry is not changed.
	if v, err = runCLI(t, sys, "pause"); err != nil || v["paused"] != true || v["complete"] != true {
		t.Fatalf("pause: %v %v", v, err)
	}
	// The one replica (this all-in-one process) confirmed it and says so.
	if ack, _ := v["acknowledged"].([]any); len(ack) != 1 {
		t.Fatalf("pause acknowledged by %v, want this process", v["acknowledged"])
	}
	reps, err := runCLI(t, sys, "replicas")
	if err != nil {
		t.Fatal(err)
	}
	if rs, _ := reps["replicas"].([]any); len(rs) != 1 || rs[0].(map[string]any)["paused"] != true || rs[0].(map[string]any)["role"] != "all-in-one" {
		t.Fatalf("replicas while paused: %v", reps)
	}
	if r := c.send("msg_cli_leaver", leaverBody("jane.doe@acme.test")); r.status != http.StatusAccepted {
		t.Fatalf("leaver: %d", r.status)
	}
	eventually(t, "the directory records the leaver", func() bool {
		v, err := runCLI(t, sys, "plan", "--email", "jane.doe@acme.test", "--json")
		return err == nil && v["status"] == "terminated"
	})
	v, _ = runCLI(t, sys, "plan", "--email", "jane.doe@acme.test", "--json")
	steps := v["steps"].([]any)
	if len(steps) != 1 || steps[0].(map[string]any)["action"] != "remove_member" || v["outcome"] != "planned" {
		t.Fatalf("plan while paused: %v", v)
	}
	time.Sleep(300 * time.Millisecond)
	if _, ok := sb.Member("jane.doe@acme.test"); !ok {
		t.Fatal("member removed while paused")
	}
	if v, err = runCLI(t, sys, "resume"); err != nil || v["paused"] != false {
		t.Fatalf("resume: %v %v", v, err)
	}
	eventually(t, "jane is removed after resume", func() bool { _, ok := sb.Member("jane.doe@acme.test"); return !ok })

	// Evidence: the halted attempt and the removal, hash-chained.
	v, err = runCLI(t, sys, "evidence", "--email", "jane.doe@acme.test")
	if err != nil {
		t.Fatal(err)
	}
	recs := v["records"].([]any)
	var kinds []string
	for _, r := range recs {
		m := r.(map[string]any)
		kinds = append(kinds, m["kind"].(string))
		if m["hash"] == "" || m["target"] != "sandbox" {
			t.Fatalf("evidence record %v", m)
		}
	}
	if len(kinds) < 2 || kinds[len(kinds)-1] != "convergence" || !strings.Contains(strings.Join(kinds, ","), "halted") {
		t.Fatalf("evidence kinds %v", kinds)
	}

	// DLQ: an undecodable message lands there; replay puts it back (and it
	// dead-letters again, being still undecodable).
	js, _ := jetstream.New(sys.nc)
	m := nats.NewMsg("jml.events.generic.leaver")
	m.Data = []byte("not json")
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	var dl []any
	eventually(t, "the dead letter is listed", func() bool {
		v, err := runCLI(t, sys, "dlq", "list")
		if err != nil {
			return false
		}
		dl, _ = v["messages"].([]any)
		return len(dl) == 1
	})
	if e := dl[0].(map[string]any); !strings.Contains(e["error"].(string), "decode event") || e["data"] != "not json" {
		t.Fatalf("dead letter %v", e)
	}
	if v, err = runCLI(t, sys, "dlq", "replay", "all"); err != nil || v["replayed"] != float64(1) {
		t.Fatalf("replay: %v %v", v, err)
	}

	// Errors are non-zero exits with a reason.
	if _, err := runCLI(t, sys, "approve", "no-such-run"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("approve unknown run: %v", err)
	}
	if _, err := runCLI(t, sys, "plan"); err == nil {
		t.Fatal("plan without --email succeeded")
	}
}

// TestPlanAllPreviewsAPolicy: `jml plan --policy new.yaml --all` shows what a new
// policy would change — including that its removals would halt at the brakes —
// and changes nothing.
func TestPlanAllPreviewsAPolicy(t *testing.T) {
	sys := mustRunMain(t, "")
	sb := sys.sandbox
	newPolicy := filepath.Join(t.TempDir(), "new.yaml")
	if err := os.WriteFile(newPolicy, []byte("reconcile: {orphans: remove, max_removals: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := len(sb.Members())
	var v map[string]any
	eventually(t, "the preview runs", func() bool {
		var err error
		v, err = runCLI(t, sys, "plan", "--all", "--policy", newPolicy, "--json")
		return err == nil
	})
	counts, _ := v["counts"].(map[string]any)
	if v["dry_run"] != true || counts["remove"].(float64) <= 2 || !strings.Contains(v["halted"].(string), "would halt") {
		t.Fatalf("preview %v", v)
	}
	if n := len(sb.Members()); n != before || len(sb.Stats().Mutations) != 0 {
		t.Fatalf("the preview changed Sentry: %d → %d members, mutations %v", before, n, sb.Stats().Mutations)
	}
	// The policy in force (orphans: report) removes nobody.
	v, err := runCLI(t, sys, "plan", "--all", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if c := v["counts"].(map[string]any); c["remove"].(float64) != 0 {
		t.Fatalf("policy in force would remove %v", c["remove"])
	}
	if _, err := runCLI(t, sys, "plan", "--all", "--policy", "/nonexistent.yaml"); err == nil {
		t.Fatal("a missing policy file was accepted")
	}
}
