package connset

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func pair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// isClosed reports whether c was closed by the set: a closed pipe end's Read fails with
// io.ErrClosedPipe (an open one times out here).
func isClosed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.ErrClosedPipe)
}

// TestShutdownClosesIdleWaitsForBusy: the shutdown closes listeners and idle connections at once,
// waits for busy ones, and refuses new ones.
func TestShutdownClosesIdleWaitsForBusy(t *testing.T) {
	s := New()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !s.AddListener(ln) {
		t.Fatal("AddListener before shutdown")
	}
	idle, _ := pair(t)
	busy, _ := pair(t)
	if !s.Add(idle, false) || !s.Add(busy, false) || !s.SetBusy(busy) {
		t.Fatal("Add before shutdown")
	}
	s.BeginShutdown()
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed by BeginShutdown")
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("listener still accepts")
	}
	if !isClosed(idle) {
		t.Fatal("idle connection left open")
	}
	if isClosed(busy) {
		t.Fatal("busy connection closed by BeginShutdown")
	}
	late, _ := pair(t)
	if s.Add(late, true) {
		t.Fatal("Add succeeded after the shutdown began")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	s.Remove(idle)
	go func() { time.Sleep(10 * time.Millisecond); s.Remove(busy) }()
	if err := s.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v, want nil once the busy handler is done", err)
	}
}

// TestWaitBoundClosesBusy: when the bound passes, busy connections are closed and Wait reports it
// after their handlers returned.
func TestWaitBoundClosesBusy(t *testing.T) {
	s := New()
	busy, _ := pair(t)
	s.Add(busy, true)
	// cutOff is closed once the handler's read has failed, before it tells the set it is done
	// (Remove), so a Wait that returned early finds it still open. (A deferred close ran after
	// Remove: Wait could return in between and the test failed on a correct set, as in CI once.)
	cutOff := make(chan struct{})
	go func() {
		busy.Read(make([]byte, 1)) // returns once the set closes busy
		close(cutOff)
		s.Remove(busy)
	}()
	s.BeginShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want DeadlineExceeded", err)
	}
	select {
	case <-cutOff:
	default:
		t.Fatal("Wait returned before the handler it cut off")
	}
}

func TestAddListenerAfterShutdownClosesIt(t *testing.T) {
	s := New()
	s.BeginShutdown()
	s.BeginShutdown() // idempotent
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if s.AddListener(ln) {
		t.Fatal("AddListener succeeded after shutdown")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("listener not closed: %v", err)
	}
}
