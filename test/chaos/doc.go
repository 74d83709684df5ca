// Package chaos is the "nothing lost, nothing done twice" suite: the real
// receiver (cmd/webhook) and workers (cmd/worker) run as separate processes
// against their own nats-server (cmd/natsd), redis-server and Sentry sandbox
// (`jml sandbox`) processes on random ports, while the tests SIGKILL
// and restart workers, restart NATS, restart and flush Redis, and make the
// sandbox fail a share of its calls. At the end the sandbox must equal the
// desired state computed from the event history, every accepted event must
// have been processed, and no person may have received more successful
// mutations of a kind than the transitions of its history imply.
//
// Every test's name contains "Chaos" and it logs one summary line starting
// "chaos:". docs/reliability.md describes the suite and its figures.
//
//	go test -count=1 -v -run Chaos ./test/chaos/               # 2,000-event lifecycle run
//	JML_CHAOS_FULL=1 go test -count=1 -v -run Chaos -timeout 30m ./test/chaos/   # 10,000 events instead (as .ci/run)
package chaos
