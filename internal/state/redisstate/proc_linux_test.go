package redisstate_test

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes a helper redis-server die with the test binary, so a
// killed or timed-out test run leaves no servers behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
