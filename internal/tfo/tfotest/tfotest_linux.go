//go:build linux

// Package tfotest holds the helpers of the tests that check TCP Fast Open against the kernel in a
// lab host: those of package tfo and the whole-proxy ones in internal/e2e/labproxy.
package tfotest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// LogBuf is a slog destination tests read back.
type LogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written.
func (l *LogBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Logger is a text logger writing to l.
func (l *LogBuf) Logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// Host returns a lab Host whose net.ipv4.tcp_fastopen is sysctl (netlab.HostOptions semantics).
func Host(t testing.TB, sysctl int) *netlab.Host {
	t.Helper()
	h, err := netlab.New(t).AddHost("h", netlab.HostOptions{TCPFastOpen: sysctl})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// EchoServer listens with tfo.Listen on loopback inside h; every accepted connection's ServerOutcome
// goes to the returned channel, then it echoes.
func EchoServer(t testing.TB, h *netlab.Host, log *slog.Logger) (string, <-chan tfo.Outcome) {
	t.Helper()
	var ln *net.TCPListener
	if err := h.Do(func() (err error) {
		ln, err = tfo.Listen(context.Background(), "tcp", "127.0.0.1:0", 16, log)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	outcomes := make(chan tfo.Outcome, 100)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			outcomes <- tfo.ServerOutcome(c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), outcomes
}

// DialIn dials addr with d from inside h; the connection closes with the test.
func DialIn(t testing.TB, h *netlab.Host, d *tfo.Dialer, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := h.Do(func() (err error) {
		c, err = d.DialContext(context.Background(), "tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// RoundTrip writes first, as a TFO client must, and reads the echo.
func RoundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo %q, %v; want %q", got, err, msg)
	}
}

// TcpExt reads one TcpExt counter of h.
func TcpExt(t testing.TB, h *netlab.Host, name string) uint64 {
	t.Helper()
	m, err := h.TcpExt()
	if err != nil {
		t.Fatal(err)
	}
	return m[name]
}

// CacheCookie makes h's kernel hold a TFO cookie for 127.0.0.1 (cookies do not depend on the port).
func CacheCookie(t testing.TB, h *netlab.Host) {
	t.Helper()
	addr, _ := EchoServer(t, h, nil)
	d := &tfo.Dialer{}
	for range 2 {
		c := DialIn(t, h, d, addr)
		RoundTrip(t, c, "cookie")
		c.Close()
	}
}

// ClosedPort returns a loopback address in h on which nothing listens.
func ClosedPort(t testing.TB, h *netlab.Host) string {
	t.Helper()
	var addr string
	if err := h.Do(func() error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addr = ln.Addr().String()
		return ln.Close()
	}); err != nil {
		t.Fatal(err)
	}
	return addr
}

// Main runs a lab-using package's tests (call it from TestMain) after sweeping the namespaces a killed
// earlier run left behind.
func Main(m *testing.M) {
	if os.Geteuid() == 0 {
		if removed, err := netlab.SweepStale(); err != nil || len(removed) > 0 {
			fmt.Fprintf(os.Stderr, "netlab: swept stale namespaces %v (err %v)\n", removed, err)
		}
	}
	os.Exit(m.Run())
}
