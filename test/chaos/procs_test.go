package chaos

import (
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binaries are built once per test binary run.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// bins builds natsd, jml (for `jml sandbox`), webhook and worker into one temp dir.
func bins(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "jml-chaos-bin-")
		if buildErr != nil {
			return
		}
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", binDir+string(os.PathSeparator),
			"../../cmd/natsd", "../../cmd/webhook", "../../cmd/worker", "../../cmd/jml")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "chaos: built binaries in %s\n", time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func needRedis(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
			return "/usr/bin/redis-server"
		}
		t.Skip("chaos: redis-server not installed")
	}
	return p
}

// handedOut keeps freePort from giving one port to two services of this
// binary before either has bound it.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePort returns a loopback port that was free a moment ago. It is chosen
// below Linux's ephemeral range (32768–60999), where the kernel never hands
// out ports on its own: a server the suite kills and restarts on the same
// port cannot lose it meanwhile to another test binary's "listen on :0" or
// to an outgoing connection's source port.
func freePort(t *testing.T) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 1000 {
		port := 20000 + mrand.IntN(12000)
		if handedOut.ports[port] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = ln.Close()
		handedOut.ports[port] = true
		return port
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// proc is one supervised child process: it can be killed and started again
// with the same command line; its output goes to a log file that is dumped
// when the test fails.
type proc struct {
	t    *testing.T
	name string
	path string
	args []string
	env  []string
	log  string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	starts   int
	kills    int // exits we caused
	crashes  int // exits we did not cause
	stopping bool
	// restartOnCrash restarts the process after an exit we did not cause
	// (a supervisor's job: e.g. a worker that cannot reach NATS at start).
	restartOnCrash bool
	notes          []string // one line per unprovoked exit
}

func newProc(t *testing.T, dir, name, path string, args, env []string) *proc {
	p := &proc{t: t, name: name, path: path, args: args, env: env, log: filepath.Join(dir, name+".log")}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			p.dump()
		}
	})
	return p
}

func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.startLocked(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
}

func (p *proc) startLocked() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(f, "---- chaos: start #%d at %s\n", p.starts, time.Now().Format("15:04:05.000"))
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "---- chaos: exit at %s: %v\n", time.Now().Format("15:04:05.000"), err)
		f.Close()
		p.mu.Lock()
		caused := p.cmd != cmd || p.stopping
		if p.cmd == cmd {
			p.cmd = nil
		}
		restart := !caused && p.restartOnCrash
		if !caused {
			p.crashes++
			p.notes = append(p.notes, fmt.Sprintf("%s exited unprovoked at %s (%v): %s", p.name,
				time.Now().Format("15:04:05.000"), err, lastLines(p.log, 3)))
		}
		p.mu.Unlock()
		close(done)
		if restart {
			time.Sleep(500 * time.Millisecond)
			p.mu.Lock()
			if p.cmd == nil && !p.stopping {
				_ = p.startLocked()
			}
			p.mu.Unlock()
		}
	}()
	return nil
}

// signal sends sig and waits up to wait for the exit (then SIGKILLs).
func (p *proc) signal(sig syscall.Signal, wait time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return
	}
	p.cmd = nil // the exit is ours
	p.kills++
	p.mu.Unlock()
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func (p *proc) kill() { p.signal(syscall.SIGKILL, 10*time.Second) }

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

func (p *proc) stop() {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	p.signal(syscall.SIGTERM, 15*time.Second)
}

func (p *proc) counts() (starts, kills, crashes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts, p.kills, p.crashes
}

// dump logs the tail of the process's log (the whole file can be large).
func (p *proc) dump() {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return
	}
	const max = 24 << 10
	if len(b) > max {
		b = append([]byte("…\n"), b[len(b)-max:]...)
	}
	p.t.Logf("==== %s log (%s) ====\n%s", p.name, p.log, b)
}

// lastLines returns the last n lines of a file, joined by " | ".
func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	var keep []string
	for i := len(lines) - 1; i >= 0 && len(keep) < n; i-- {
		if !strings.HasPrefix(lines[i], "---- chaos:") {
			keep = append([]string{lines[i]}, keep...)
		}
	}
	return strings.Join(keep, " | ")
}

func (p *proc) crashNotes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.notes...)
}

// waitHTTP polls url until it answers 200.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s: %s", url, timeout, last)
}

// waitTCP polls addr until it accepts connections.
func waitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s not accepting connections within %s", addr, timeout)
}
