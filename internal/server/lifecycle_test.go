package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// chargen writes until the connection breaks.
func chargen(c *net.TCPConn) {
	chunk := make([]byte, 16<<10)
	for {
		if _, err := c.Write(chunk); err != nil {
			return
		}
	}
}

func echo(c *net.TCPConn) { io.Copy(c, c) }

// openFDs counts this process's open file descriptors other than pipes. Pipes are left out because
// Go keeps the pipes of splice(2) in a pool that only the garbage collector empties.
func openFDs(t testing.TB) (n int, kinds map[string]int) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	kinds = make(map[string]int)
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, already closed
		}
		kind, _, _ := strings.Cut(target, ":")
		kinds[kind]++
		if kind != "pipe" {
			n++
		}
	}
	return n, kinds
}

// abort ends c the hard way (RST) or the soft way (FIN, without a TLS close_notify).
func abort(c net.Conn, rst bool) {
	if tc, ok := c.(*net.TCPConn); ok && rst {
		tc.SetLinger(0)
	}
	c.Close()
}

// TestNoLeakAfterAbortedConnections: thousands of connections cut at every stage leave no goroutine
// and no file descriptor behind once the server is idle again.
func TestNoLeakAfterAbortedConnections(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts file descriptors in /proc/self/fd: Linux only")
	}
	perKind := 400
	if testing.Short() {
		perKind = 100
	}
	fb := startFallback(t)
	gen := listenTarget(t, "tcp", "127.0.0.1:0", chargen)
	ech := listenTarget(t, "tcp", "127.0.0.1:0", echo)
	srv := startServer(t, func(o *Options) {
		o.Fallback = fb.addr
		o.HandshakeTimeout = 2 * time.Second
		o.RequestTimeout = time.Second
	})
	good := func(dest string) []byte { return header(t, testPassword, trojan.CmdConnect, dest) }
	clientHello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}

	dial := func() (net.Conn, error) { return net.DialTimeout("tcp", srv.addr, 5*time.Second) }
	handshake := func() (*tls.Conn, net.Conn, error) {
		raw, err := dial()
		if err != nil {
			return nil, nil, err
		}
		tc := tls.Client(raw, clientTLS)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, nil, err
		}
		return tc, raw, nil
	}
	kinds := []struct {
		name string
		run  func(i int) error
	}{
		{"mid-handshake", func(i int) error {
			c, err := dial()
			if err != nil {
				return err
			}
			c.Write(clientHello[:1+i%len(clientHello)])
			abort(c, i%2 == 0)
			return nil
		}},
		{"mid-header", func(i int) error {
			tc, raw, err := handshake()
			if err != nil {
				return err
			}
			tc.Write(good(ech.Addr().String())[:1+i%60])
			abort(raw, i%2 == 0)
			return nil
		}},
		{"after header", func(i int) error {
			tc, raw, err := handshake()
			if err != nil {
				return err
			}
			tc.Write(good(ech.Addr().String()))
			abort(raw, i%2 == 0)
			return nil
		}},
		{"during relay", func(i int) error {
			tc, raw, err := handshake()
			if err != nil {
				return err
			}
			tc.Write(good(gen.Addr().String()))
			if _, err := io.ReadFull(tc, make([]byte, 32<<10)); err != nil {
				raw.Close()
				return err
			}
			abort(raw, i%2 == 0)
			return nil
		}},
		{"during plain fallback", func(i int) error {
			c, err := dial()
			if err != nil {
				return err
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			if _, err := io.ReadFull(c, make([]byte, 10)); err != nil {
				c.Close()
				return err
			}
			abort(c, i%2 == 0)
			return nil
		}},
		{"during fallback", func(i int) error {
			tc, raw, err := handshake()
			if err != nil {
				return err
			}
			tc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			if _, err := io.ReadFull(tc, make([]byte, 10)); err != nil {
				raw.Close()
				return err
			}
			abort(raw, i%2 == 0)
			return nil
		}},
	}
	runAll := func(n int) {
		var failures atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		work := make(chan func() error)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for f := range work {
					if err := f(); err != nil {
						failures.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
				}
			}()
		}
		for i := range n {
			for _, k := range kinds {
				work <- func() error { return k.run(i) }
			}
		}
		close(work)
		wg.Wait()
		if f := failures.Load(); f > 0 {
			t.Fatalf("%d client operations failed, first: %v", f, firstErr.Load())
		}
	}

	runAll(2) // warm up pools and lazily started goroutines
	waitIdle(t, srv)
	time.Sleep(100 * time.Millisecond)
	ignore := goleak.IgnoreCurrent()
	baseFDs, baseKinds := openFDs(t)
	baseStats := srv.Stats()

	// With the collector off, a connection nobody closed cannot be rescued by its finalizer before
	// the counts below are taken: a leak shows.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	start := time.Now()
	runAll(perKind)
	waitIdle(t, srv)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d aborted connections in %v; heap %d MiB, GCs %d", perKind*len(kinds), time.Since(start).Round(time.Millisecond), ms.HeapAlloc>>20, ms.NumGC)

	st := srv.Stats()
	if got := st.Accepted - baseStats.Accepted; got != int64(perKind*len(kinds)) {
		t.Errorf("server accepted %d connections, want %d", got, perKind*len(kinds))
	}
	goleak.VerifyNone(t, ignore)
	deadline := time.Now().Add(5 * time.Second)
	for {
		fds, kinds := openFDs(t)
		if fds <= baseFDs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d file descriptors open (%v), %d before (%v)", fds, kinds, baseFDs, baseKinds)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShutdownDrains: Shutdown stops accepting at once, lets an active relay carry on, returns as
// soon as it ends, and reports nothing left.
func TestShutdownDrains(t *testing.T) {
	srv := startServer(t, nil)
	ech := listenTarget(t, "tcp", "127.0.0.1:0", echo)
	tc, _ := dialTLS(t, srv.addr)
	tc.Write(append(header(t, testPassword, trojan.CmdConnect, ech.Addr().String()), "ping"...))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(tc, buf); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { done <- srv.Shutdown(ctx) }()

	// No new connection gets in.
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", srv.addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("server still accepts after Shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-srv.serve:
		if err != nil {
			t.Fatalf("Serve = %v, want nil", err)
		}
		srv.serve <- nil // for the cleanup
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	// The relay still works while draining.
	for range 3 {
		tc.Write([]byte("more"))
		if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "more" {
			t.Fatalf("relay during shutdown: %q, %v", buf, err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a relay active", err)
	case <-time.After(100 * time.Millisecond):
	}
	start := time.Now()
	tc.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown = %v, want nil", err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("Shutdown took %v after the last connection ended", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last relay ended")
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown = %v", err)
	}
}

// TestShutdownDeadline: relays still open when the context ends are closed, and Shutdown returns
// within the bound with the context's error.
func TestShutdownDeadline(t *testing.T) {
	srv := startServer(t, nil)
	ech := listenTarget(t, "tcp", "127.0.0.1:0", echo)
	var conns []*tls.Conn
	for range 5 {
		tc, _ := dialTLS(t, srv.addr)
		tc.Write(append(header(t, testPassword, trojan.CmdConnect, ech.Addr().String()), "ping"...))
		if _, err := io.ReadFull(tc, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, tc)
	}
	// And one that never finishes its handshake.
	stuck, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	stuck.Write([]byte{0x16, 0x03})

	const bound = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	start := time.Now()
	err = srv.Shutdown(ctx)
	el := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if el < bound || el > bound+time.Second {
		t.Fatalf("Shutdown took %v, bound %v", el, bound)
	}
	if a := srv.Stats().Active; a != 0 {
		t.Fatalf("%d connections active after Shutdown", a)
	}
	for _, tc := range conns {
		tc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := tc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("relay still open after Shutdown: %v", err)
		}
	}
}

// TestMaxConns: beyond MaxConns the server does not accept; a freed slot lets the next one in.
func TestMaxConns(t *testing.T) {
	srv := startServer(t, func(o *Options) { o.MaxConns = 2 })
	ech := listenTarget(t, "tcp", "127.0.0.1:0", echo)
	open := func() *tls.Conn {
		tc, _ := dialTLS(t, srv.addr)
		tc.Write(append(header(t, testPassword, trojan.CmdConnect, ech.Addr().String()), "ping"...))
		if _, err := io.ReadFull(tc, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		return tc
	}
	first := open()
	open()

	raw, err := net.Dial("tcp", srv.addr) // completes: the kernel's backlog takes it
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	third := tls.Client(raw, clientTLS)
	hs := make(chan error, 1)
	go func() { hs <- third.Handshake() }()
	select {
	case err := <-hs:
		t.Fatalf("third handshake finished (%v) with MaxConns 2 in use", err)
	case <-time.After(300 * time.Millisecond):
	}
	if st := srv.Stats(); st.Active != 2 || st.Accepted != 2 {
		t.Fatalf("stats %+v, want 2 active and 2 accepted", st)
	}
	first.Close()
	select {
	case err := <-hs:
		if err != nil {
			t.Fatalf("third handshake: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("third connection not served after a slot was freed")
	}
}

func TestNewValidates(t *testing.T) {
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	store := testStore()
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"no TLS", Options{Users: store}},
		{"no users", Options{TLSConfig: cfg}},
		{"bad fallback", Options{TLSConfig: cfg, Users: store, Fallback: "no-port"}},
		{"negative timeout", Options{TLSConfig: cfg, Users: store, IdleTimeout: -1}},
		{"negative MaxConns", Options{TLSConfig: cfg, Users: store, MaxConns: -1}},
	} {
		if _, err := New(tc.opts); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
	s, err := New(Options{TLSConfig: cfg, Users: store})
	if err != nil {
		t.Fatal(err)
	}
	if s.opts.HandshakeTimeout != DefaultHandshakeTimeout || s.opts.IdleTimeout != DefaultIdleTimeout ||
		s.opts.MaxConns != DefaultMaxConns || s.opts.Dial == nil {
		t.Fatalf("defaults not applied: %+v", s.opts)
	}
	// Serve after Close returns nil at once and closes the listener.
	s.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s.Serve(ln); err != nil {
		t.Fatalf("Serve after Close = %v", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("listener still open")
	}
}
