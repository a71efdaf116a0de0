package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/users"
)

// TestStopAcceptingHandsOver: two servers share one listening socket, as the old and the new process
// of an upgrade do; while clients connect as fast as they can, the new one starts serving and the old
// one stops accepting and shuts down. Every connection is answered, by one or the other.
func TestStopAcceptingHandsOver(t *testing.T) {
	opts := func() Options {
		return Options{
			TLSConfig:   &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}},
			Users:       users.NewStatic([]string{testPassword}),
			Logger:      slog.New(slog.DiscardHandler),
			ServerToken: "nginx",
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File() // the new process's copy of the socket
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	oldSrv, _ := New(opts())
	newSrv, _ := New(opts())
	defer newSrv.Close()
	oldDone := make(chan error, 1)
	go func() { oldDone <- oldSrv.Serve(ln) }()

	var answered, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := func() error {
					c, err := net.DialTimeout("tcp", ln2.Addr().String(), 5*time.Second)
					if err != nil {
						return err
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
					b, err := io.ReadAll(c)
					if err != nil {
						return err
					}
					if !bytes.HasPrefix(b, []byte("HTTP/1.1 400 Bad Request\r\n")) {
						return io.ErrUnexpectedEOF
					}
					return nil
				}()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					answered.Add(1)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	go newSrv.Serve(ln2)
	time.Sleep(100 * time.Millisecond)
	oldSrv.StopAccepting(ln)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := oldSrv.Shutdown(ctx); err != nil {
		t.Fatalf("old server's drain: %v", err)
	}
	if err := <-oldDone; err != nil {
		t.Fatalf("old Serve: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	o, n := oldSrv.Stats().Accepted, newSrv.Stats().Accepted
	t.Logf("%d connections answered (old server %d, new %d), %d failed", answered.Load(), o, n, failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d connections failed across the hand-over; first: %v", failed.Load(), firstErr.Load())
	}
	if o == 0 || n == 0 {
		t.Fatalf("old server accepted %d, new %d: both should have served", o, n)
	}
}
