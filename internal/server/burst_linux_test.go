package server

import (
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

// allFDs counts every open file descriptor of the process, pipes included (splice's pipe pairs are
// pipes).
func allFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestBurstResourcesReturn: 2000 connections that send 10 non-TLS bytes and close leave file
// descriptors and goroutines within +20 of the baseline after 10 s, with the garbage collector off
// (so nothing is rescued by a finalizer: what Go pools until two collections, such as splice pipes,
// would show). Built-in answers and tls_site relays both.
func TestBurstResourcesReturn(t *testing.T) {
	const burst, slack = 2000, 20
	site := startFallback(t)
	for _, mode := range []string{"built-in", "tls_site"} {
		t.Run(mode, func(t *testing.T) {
			srv := startServer(t, func(o *Options) {
				o.MaxConnsPerIP = burst // one address: this test is about resources, not limits
				o.Fallback = site.addr
				if mode == "tls_site" {
					o.TLSSite = site.addr
				}
			})
			inputs := [][]byte{[]byte("GET / HTTP"), []byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09"), []byte("SSH-2.0-Op"), []byte("\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6")}
			run := func(n int) {
				var wg sync.WaitGroup
				work := make(chan int)
				for range 64 {
					wg.Go(func() {
						for i := range work {
							c, err := net.DialTimeout("tcp", srv.addr, 5*time.Second)
							if err != nil {
								t.Error(err)
								return
							}
							c.Write(inputs[i%len(inputs)])
							c.Close()
						}
					})
				}
				for i := range n {
					work <- i
				}
				close(work)
				wg.Wait()
			}
			run(8) // warm up pools and the sites' goroutines
			waitIdle(t, srv)
			time.Sleep(100 * time.Millisecond)
			baseFDs, baseG := allFDs(t), runtime.NumGoroutine()
			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			start := time.Now()
			base := srv.Stats().Accepted
			run(burst)
			for deadline := time.Now().Add(10 * time.Second); srv.Stats().Accepted < base+burst; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) { // the last ones may wait in the backlog a moment
					t.Fatalf("accepted %d of %d", srv.Stats().Accepted-base, burst)
				}
			}
			done := time.Now()
			var fds, gs int
			for {
				fds, gs = allFDs(t), runtime.NumGoroutine()
				if fds <= baseFDs+slack && gs <= baseG+slack {
					break
				}
				if time.Since(done) > 10*time.Second {
					t.Fatalf("10 s after a burst of %d: %d fds (baseline %d), %d goroutines (baseline %d)", burst, fds, baseFDs, gs, baseG)
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("%d aborted connections in %v; back to %d fds (baseline %d), %d goroutines (baseline %d) %v after the burst",
				burst, done.Sub(start).Round(time.Millisecond), fds, baseFDs, gs, baseG, time.Since(done).Round(time.Millisecond))
			if st := srv.Stats(); st.RefusedPerIP != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}
