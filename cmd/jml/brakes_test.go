package main

import (
	"net/http"
	"testing"
	"time"
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
