package server

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// A client's spare connection stays silent after TLS for longer than the request timeout and is then
// used: the server still reads it as Trojan. Silence beyond SpareTimeout goes to the fallback with
// nothing to replay, as a silent connection did before after the request timeout.
func TestSilentSpareIsToleratedUntilSpareTimeout(t *testing.T) {
	fb := startFallback(t)
	ech := listenTarget(t, "tcp", "127.0.0.1:0", echo)
	srv := startServer(t, func(o *Options) {
		o.Fallback = fb.addr
		o.RequestTimeout = 100 * time.Millisecond
		o.SpareTimeout = 800 * time.Millisecond
	})

	c, _ := dialTLS(t, srv.addr)
	time.Sleep(4 * 100 * time.Millisecond)
	req := append(header(t, testPassword, trojan.CmdConnect, ech.Addr().String()), "ping"...)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("after 400ms of silence (request timeout 100ms): read %q, %v; want the echo", got, err)
	}
	fb.none(t, 10*time.Millisecond)

	c2, _ := dialTLS(t, srv.addr)
	start := time.Now()
	select {
	case <-fb.opened:
	case <-time.After(5 * time.Second):
		t.Fatal("a connection silent beyond SpareTimeout never reached the fallback")
	}
	if el := time.Since(start); el < 700*time.Millisecond {
		t.Fatalf("silent connection handed to the fallback after %v, before SpareTimeout 800ms", el)
	}
	c2.Close()
	if rec := fb.next(t); len(rec.got) != 0 {
		t.Fatalf("fallback got %q from a silent connection", rec.got)
	}
}

// Once the first byte arrives, the rest of the request has RequestTimeout, as before: a prober's
// partial request after a long silence still goes to the fallback with its bytes.
func TestPartialRequestAfterSilenceGoesToFallback(t *testing.T) {
	fb := startFallback(t)
	srv := startServer(t, func(o *Options) {
		o.Fallback = fb.addr
		o.RequestTimeout = 200 * time.Millisecond
		o.SpareTimeout = 5 * time.Second
	})
	c, _ := dialTLS(t, srv.addr)
	time.Sleep(300 * time.Millisecond)
	part := header(t, testPassword, trojan.CmdConnect, "127.0.0.1:80")[:30]
	start := time.Now()
	if _, err := c.Write(part); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fb.opened:
	case <-time.After(3 * time.Second):
		t.Fatal("partial request never reached the fallback")
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 2*time.Second {
		t.Fatalf("partial request handed over after %v, want about the 200ms request timeout", el)
	}
	c.CloseWrite()
	io.Copy(io.Discard, c)
	if rec := fb.next(t); string(rec.got) != string(part) {
		t.Fatalf("fallback got %q, want %q", rec.got, part)
	}
}

// Shutdown does not wait long for silent spares: they are closed after a short grace, within which
// a client that had just finished its handshake still gets its request served.
func TestShutdownClosesSilentSpares(t *testing.T) {
	srv := startServer(t, func(o *Options) { o.SpareTimeout = time.Minute })
	_, raw := dialTLS(t, srv.addr)
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if el := time.Since(start); el > silentDrainGrace+time.Second {
		t.Fatalf("shutdown waited %v for a silent connection", el)
	}
	// The server closed it: close_notify (if any) and then EOF, well before the read deadline.
	raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	for {
		_, err := raw.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("silent connection still open after shutdown")
		}
		break
	}
}

func TestRequestJustAfterShutdownBeganIsServed(t *testing.T) {
	ech := listenTarget(t, "tcp", "127.0.0.1:0", echo)
	srv := startServer(t, func(o *Options) { o.SpareTimeout = time.Minute })
	c, _ := dialTLS(t, srv.addr)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // the shutdown has begun; the request comes now
	req := append(header(t, testPassword, trojan.CmdConnect, ech.Addr().String()), "late"...)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "late" {
		t.Fatalf("request sent as the shutdown began: %q, %v", got, err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
