package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestSandboxShutdownWithUnusedConnection: a client connection that never
// sent a request (what an HTTP client's pool keeps after a dial race) no
// longer holds `jml sandbox` for http.Server.Shutdown's 5 s; a keep-alive
// connection that served a request is closed as idle.
func TestSandboxShutdownWithUnusedConnection(t *testing.T) {
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmdSandbox(ctx, []string{"--addr", addr}, io.Discard, io.Discard) }()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	eventually(t, "the sandbox listens", func() bool {
		r, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/_sandbox/stats")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	})
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	time.Sleep(50 * time.Millisecond) // accepted: the server tracks it as new
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("shutdown waits for a connection that never sent a request")
	}
	t.Logf("drained in %v", time.Since(start))
	_ = raw.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatal("the unused connection is still open")
	}
}
