package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/cmd/internal/config"
)

// TestBrakesHaltEventRemovals: beyond brakes.max_event_removals_per_minute,
// removals stop (joiners go on) until `jml approve brakes`.
func TestBrakesHaltEventRemovals(t *testing.T) {
	sys := mustRunMainCfg(t, "", nil, "brakes: {max_event_removals_per_minute: 2}\n")
	sb := sys.sandbox
	c := newSignedClient(t, sys)
	leavers := []string{"bob.martin@acme.test", "carlos.garcia@acme.test", "diana.prince@acme.test", "ethan.hunt@acme.test"}
	for i, who := range leavers {
		if r := c.send("msg_brake_"+who, leaverBody(who)); r.status != http.StatusAccepted {
			t.Fatalf("leaver %d: %d", i, r.status)
		}
	}
	gone := func() int {
		n := 0
		for _, who := range leavers {
			if _, ok := sb.Member(who); !ok {
				n++
			}
		}
		return n
	}
	eventually(t, "two leavers are removed", func() bool { return gone() == 2 })
	eventually(t, "the brakes report halted", func() bool {
		ctl, err := runCLIControl(t, sys)
		return err == nil && ctl["brakes_halted"] == true
	})
	// Joiners are not braked.
	joiner := []byte(`{"type":"joiner","person":{"email":"zoe.new@acme.test","status":"active"}}`)
	if r := c.send("msg_brake_joiner", joiner); r.status != http.StatusAccepted {
		t.Fatalf("joiner: %d", r.status)
	}
	eventually(t, "the joiner is invited while the brakes hold", func() bool { _, ok := sb.Member("zoe.new@acme.test"); return ok })
	time.Sleep(200 * time.Millisecond)
	if n := gone(); n != 2 {
		t.Fatalf("%d leavers removed while the brakes were halted", n)
	}
	v, err := runCLI(t, sys, "approve", "brakes")
	if err != nil || v["brakes_halted"] != false || v["approved_by"] == "" {
		t.Fatalf("approve: %v %v", v, err)
	}
	eventually(t, "the remaining leavers are removed after approval", func() bool { return gone() == 4 })
}

func runCLIControl(t *testing.T, sys *system) (map[string]any, error) {
	t.Helper()
	t.Setenv("JML_ADMIN_ADDR", sys.adminAddr)
	t.Setenv("JML_DATA_DIR", sys.cfg.DataDir) // the CLI reads the generated admin.token there
	c, err := newAdminClient()
	if err != nil {
		return nil, err
	}
	var v map[string]any
	err = c.do(t.Context(), http.MethodGet, "/v1/control", nil, &v)
	return v, err
}

// TestTwoPersonBrakeApproval: with brakes.approvals: 2 the halted brakes are
// released only by a second, different named operator; the first approval
// is recorded, the same operator twice is refused, and removals stay held
// until the release.
func TestTwoPersonBrakeApproval(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	if err := os.WriteFile(file, []byte("alice "+aliceToken+"\nbob "+bobToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Common{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", SandboxToken: "sandbox",
		DataDir: dir, LogLevel: "debug", MaxBodyBytes: 1 << 20, StreamReplicas: 1, AdminTokensFile: file,
		PolicyFile: filepath.Join(dir, "policy.yaml")}
	if err := os.WriteFile(cfg.PolicyFile, []byte("brakes: {max_event_removals_per_minute: 1, approvals: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sys, err := startAll(context.Background(), cfg, runOptions{stdout: io.Discard, logs: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Close)
	sb := sys.sandbox
	c := newSignedClient(t, sys)
	leavers := []string{"bob.martin@acme.test", "carlos.garcia@acme.test"}
	for i, who := range leavers {
		if r := c.send("msg_2p_"+who, leaverBody(who)); r.status != http.StatusAccepted {
			t.Fatalf("leaver %d: %d", i, r.status)
		}
	}
	gone := func() int {
		n := 0
		for _, who := range leavers {
			if _, ok := sb.Member(who); !ok {
				n++
			}
		}
		return n
	}
	t.Setenv("JML_ADMIN_TOKEN", aliceToken)
	eventually(t, "one leaver is removed and the brakes halt", func() bool {
		ctl, err := runCLIControl(t, sys)
		return err == nil && ctl["brakes_halted"] == true && gone() == 1
	})
	// The first of two approvals answers, and exits 3: still halted.
	v, err := runCLI(t, sys, "approve", "brakes")
	if exitCode(err) != exitHalted || v["released"] != false || v["brakes_halted"] != true || v["approvals_needed"] != float64(2) {
		t.Fatalf("first approval (alice): %v %v", v, err)
	}
	if _, err := runCLI(t, sys, "approve", "brakes"); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("alice approving twice: %v, want 409", err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := gone(); n != 1 {
		t.Fatalf("%d leavers removed with one of two approvals", n)
	}
	t.Setenv("JML_ADMIN_TOKEN", bobToken)
	v, err = runCLI(t, sys, "approve", "brakes")
	if err != nil || v["released"] != true || v["brakes_halted"] != false || v["approved_by"] != "alice,bob" {
		t.Fatalf("second approval (bob): %v %v", v, err)
	}
	eventually(t, "the held leaver is removed after the second approval", func() bool { return gone() == 2 })
}
