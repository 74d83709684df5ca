package main

import (
	"net"
	"net/http"
	"sync"
)

// drainNew makes srv's graceful shutdown close the connections that have
// not sent a request yet. http.Server.Shutdown waits for those until they
// are 5 s old, yet they carry no work: an HTTP client's pool keeps
// connections it dialed while an earlier one was being freed, never using
// them. Without this a sandbox or receiver whose client pre-dialed a
// connection spends its whole 5 s drain on it.
func drainNew(srv *http.Server) {
	var mu sync.Mutex
	fresh := map[net.Conn]struct{}{}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		mu.Lock()
		if st == http.StateNew {
			fresh[c] = struct{}{}
		} else {
			delete(fresh, c)
		}
		mu.Unlock()
		if prev != nil {
			prev(c, st)
		}
	}
	// Shutdown runs this after closing the listeners: no new connection
	// arrives afterwards.
	srv.RegisterOnShutdown(func() {
		mu.Lock()
		defer mu.Unlock()
		for c := range fresh {
			_ = c.Close()
			delete(fresh, c)
		}
	})
}
