// Package connset is the bookkeeping a service needs to stop cleanly: the listeners it serves, the
// connections it is handling and whether each is busy. Shutting down stops accepting, closes the
// connections that are not busy, waits for the busy ones within a bound and then closes them.
// The client and the server both use it, so the two stop the same way.
package connset

import (
	"context"
	"net"
	"sync"
)

// Set tracks listeners and connections. The zero value is not usable; call New.
type Set struct {
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]bool // true: busy, a shutdown waits for it
	closing   bool
	done      chan struct{} // closed when the shutdown begins
	handlers  sync.WaitGroup
}

// New returns an empty Set.
func New() *Set {
	return &Set{listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]bool{}, done: make(chan struct{})}
}

// AddListener registers ln. Once the shutdown has begun it closes ln and returns false.
func (s *Set) AddListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		_ = ln.Close()
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

// RemoveListener forgets ln; it does not close it.
func (s *Set) RemoveListener(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

// Add registers c, busy or not, for a handler that will call Remove. Once the shutdown has begun it
// returns false and the caller closes c.
func (s *Set) Add(c net.Conn, busy bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = busy
	s.handlers.Add(1)
	return true
}

// SetBusy marks c busy, so a shutdown lets it finish. It returns false when the shutdown has already
// begun (c may have been closed as idle): the caller should give up on c.
func (s *Set) SetBusy(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; ok {
		s.conns[c] = true
	}
	return !s.closing
}

// Remove forgets c when its handler is done; it does not close it.
func (s *Set) Remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.handlers.Done()
}

// Closing reports whether the shutdown has begun.
func (s *Set) Closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Done is closed when the shutdown begins.
func (s *Set) Done() <-chan struct{} { return s.done }

// BeginShutdown stops accepting: it closes every listener, and every connection that is not busy.
// It is idempotent.
func (s *Set) BeginShutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		s.closing = true
		close(s.done)
	}
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c, busy := range s.conns {
		if !busy {
			_ = c.Close()
		}
	}
}

// CloseAll begins the shutdown and closes every connection, busy or not.
func (s *Set) CloseAll() {
	s.BeginShutdown()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}

// Wait waits until every connection has been removed. If ctx ends first it closes them all, waits
// for their handlers to return and reports ctx.Err().
func (s *Set) Wait(ctx context.Context) error {
	drained := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(drained)
	}()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
	}
	s.CloseAll()
	<-drained
	return ctx.Err()
}
