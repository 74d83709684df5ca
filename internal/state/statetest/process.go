package statetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentry-jml/sentry-jml/internal/state"
)

// Environment variables passed from RunProcessTests to its child processes.
const (
	envChildKey  = "JML_STATETEST_CHILD_KEY"
	envChildName = "JML_STATETEST_CHILD_NAME"
	envChildID   = "JML_STATETEST_CHILD_ID"
)

const (
	processes   = 8
	readyLine   = "STATETEST-READY"
	resultLine  = "STATETEST-RESULT"
	childWaitGo = 30 * time.Second
)

// RunProcessTests races separate OS processes against the backend: the test
// binary re-executes itself (os.Args[0] with -test.run selecting this very
// subtest) as child processes which open the backend through newHarness with
// Harness.ChildEnv set in their environment, wait for a common start signal
// on stdin, then call MarkSeen and Acquire on one key and report. Exactly one
// child must win each. newHarness must return a Harness with ChildEnv set.
func RunProcessTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Run("MultiProcess", func(t *testing.T) {
		if key := os.Getenv(envChildKey); key != "" && os.Getenv(envChildName) == t.Name() {
			runChild(t, newHarness(t), key)
			return
		}
		t.Parallel()
		h := newHarness(t)
		if h.ChildEnv == nil {
			t.Fatal("RunProcessTests: Harness.ChildEnv is nil; the backend cannot be shared with child processes")
		}
		runParent(t, h)
	})
}

// runPattern turns a test name into a -test.run pattern matching exactly it.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

type childResult struct {
	id       int
	pid      int
	first    bool
	acquired bool
	token    int64
}

func runChild(t *testing.T, h Harness, key string) {
	ctx := ctxFor(t)
	id := os.Getenv(envChildID)
	fmt.Println(readyLine)
	// Wait for the parent to release all children at once.
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("child %s: read start signal: %v", id, err)
	}
	if strings.TrimSpace(line) != "go" {
		t.Fatalf("child %s: start signal %q; want \"go\"", id, line)
	}
	first, err := h.Coord.MarkSeen(ctx, key, longTTL)
	if err != nil {
		t.Fatalf("child %s: MarkSeen: %v", id, err)
	}
	acquired := true
	lease, err := h.Coord.Acquire(ctx, key, "process-"+id, longTTL)
	if errors.Is(err, state.ErrLeaseHeld) {
		acquired = false
	} else if err != nil {
		t.Fatalf("child %s: Acquire: %v", id, err)
	}
	fmt.Printf("%s id=%s pid=%d first=%t acquired=%t token=%d\n", resultLine, id, os.Getpid(), first, acquired, lease.Token)
}

func runParent(t *testing.T, h Harness) {
	key := uniquePrefix(t) + "evt:multiprocess"
	type child struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		out    strings.Builder
		result *childResult
	}
	children := make([]*child, processes)
	ready := make(chan int, processes)
	var wg sync.WaitGroup
	for i := range children {
		c := &child{}
		children[i] = c
		c.cmd = exec.Command(os.Args[0], "-test.run="+runPattern(t.Name()), "-test.count=1", "-test.timeout=60s")
		c.cmd.Env = append(append(os.Environ(), h.ChildEnv...),
			envChildKey+"="+key, envChildName+"="+t.Name(), fmt.Sprintf("%s=%d", envChildID, i))
		var err error
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		stdout, err := c.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		c.cmd.Stderr = c.cmd.Stdout
		if err := c.cmd.Start(); err != nil {
			t.Fatalf("start child %d: %v", i, err)
		}
		t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				c.out.WriteString(line + "\n")
				switch {
				case line == readyLine:
					ready <- i
				case strings.HasPrefix(line, resultLine+" "):
					var r childResult
					if _, err := fmt.Sscanf(line, resultLine+" id=%d pid=%d first=%t acquired=%t token=%d",
						&r.id, &r.pid, &r.first, &r.acquired, &r.token); err == nil {
						c.result = &r
					}
				}
			}
		}()
	}

	timeout := time.After(childWaitGo)
	for range processes {
		select {
		case <-ready:
		case <-timeout:
			t.Fatalf("children not ready after %v", childWaitGo)
		}
	}
	for _, c := range children {
		_, _ = io.WriteString(c.stdin, "go\n")
	}
	for _, c := range children {
		_ = c.stdin.Close()
	}
	wg.Wait()
	var firsts, acquired int
	var tokens []int64
	pids := map[int]bool{os.Getpid(): true}
	for i, c := range children {
		err := c.cmd.Wait()
		if err != nil || c.result == nil {
			t.Fatalf("child %d: exit %v, result %v; output:\n%s", i, err, c.result, c.out.String())
		}
		if pids[c.result.pid] || c.result.pid != c.cmd.Process.Pid {
			t.Fatalf("child %d reported pid %d; want its own process %d, distinct from the others", i, c.result.pid, c.cmd.Process.Pid)
		}
		pids[c.result.pid] = true
		if c.result.first {
			firsts++
		}
		if c.result.acquired {
			acquired++
			tokens = append(tokens, c.result.token)
		}
	}
	if firsts != 1 || acquired != 1 {
		t.Fatalf("of %d processes, %d won MarkSeen and %d won Acquire; want exactly 1 each", processes, firsts, acquired)
	}
	// The winner's lease is visible, with its token, from this process too.
	ctx := ctxFor(t)
	if seen := mustSeen(t, ctx, h.Coord, key); !seen {
		t.Fatal("parent does not see the children's dedupe record")
	}
	_, err := h.Coord.Acquire(ctx, key, "parent", longTTL)
	wantErr(t, "parent Acquire of the child's lease", err, state.ErrLeaseHeld)
	t.Logf("%d processes raced; winning token %d", processes, tokens[0])
}
