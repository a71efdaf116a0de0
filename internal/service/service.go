// Package service is the one lifecycle every long-running part of a fastrojan process has (server,
// client, forward, nat, farm key rotation, user ledger, metrics endpoint): parts start in order,
// stop in reverse order within one bound, and a Group of them has an idempotent Close and a Done
// channel, in the manner of wireguard-go's Device.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Part is one long-running piece of a process.
type Part struct {
	Name string
	// Run, if set, does the part's work and returns when it ends: nil once Stop was called, an
	// error when the part failed on its own (a listener that broke). The Group runs it in a
	// goroutine it owns.
	Run func() error
	// Stop ends the part: gracefully until ctx is done, then by force; it returns once the part's
	// goroutines have. The Group calls it once. Nil: nothing to stop.
	Stop func(ctx context.Context) error
}

// Server is what server.Server and client.Client have in common.
type Server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// Serving is a Part that serves ln with srv.
func Serving(name string, srv Server, ln net.Listener) Part {
	return Part{Name: name, Run: func() error { return srv.Serve(ln) }, Stop: srv.Shutdown}
}

// Group is parts started in order and stopped in reverse order within one bound.
type Group struct {
	log     *slog.Logger
	parts   []Part
	wg      sync.WaitGroup // the Run goroutines
	failed  chan struct{}  // closed when a Run ended before Close
	failMu  sync.Mutex
	failErr error
	closing chan struct{}
	once    sync.Once
	done    chan struct{} // closed when Close has stopped every part
	err     error         // what Close reports
}

// Start runs the parts' Run functions, in order.
func Start(log *slog.Logger, parts ...Part) *Group {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Group{log: log, parts: parts, failed: make(chan struct{}), closing: make(chan struct{}), done: make(chan struct{})}
	for _, p := range parts {
		if p.Run == nil {
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			err := p.Run()
			select {
			case <-g.closing:
				return // stopped by Close: whatever Run says is part of stopping
			default:
			}
			if err == nil {
				err = errors.New("stopped on its own")
			}
			g.fail(fmt.Errorf("%s: %w", p.Name, err))
		}()
	}
	return g
}

func (g *Group) fail(err error) {
	g.failMu.Lock()
	defer g.failMu.Unlock()
	if g.failErr == nil {
		g.failErr = err
		close(g.failed)
	}
}

// Failed is closed when a part ended on its own; Err then says which and why.
func (g *Group) Failed() <-chan struct{} { return g.failed }

// Err is the failure of the first part that ended on its own, or nil.
func (g *Group) Err() error {
	g.failMu.Lock()
	defer g.failMu.Unlock()
	return g.failErr
}

// Done is closed once Close has stopped every part.
func (g *Group) Done() <-chan struct{} { return g.done }

// Close stops the parts in reverse order, all within timeout: each gets what is left of the bound
// to stop gracefully, then stops by force. It waits for every Run to return. Calling it again
// waits for the first call and returns its result.
func (g *Group) Close(timeout time.Duration) error {
	g.once.Do(func() {
		close(g.closing)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var errs []error
		for i := len(g.parts) - 1; i >= 0; i-- {
			if p := g.parts[i]; p.Stop != nil {
				if err := p.Stop(ctx); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
				}
			}
		}
		g.wg.Wait()
		g.err = errors.Join(errs...)
		close(g.done)
	})
	<-g.done
	return g.err
}

// Run starts parts in order and runs them until ctx ends or one of them fails, then stops them all
// in reverse order within timeout. It returns the failure, if any; what did not stop gracefully in
// time is logged.
func Run(ctx context.Context, log *slog.Logger, timeout time.Duration, parts ...Part) error {
	g := Start(log, parts...)
	select {
	case <-ctx.Done():
		g.log.Info("shutting down", "drain_timeout", timeout)
	case <-g.Failed():
		g.log.Info("shutting down", "drain_timeout", timeout, "reason", g.Err())
	}
	if err := g.Close(timeout); err != nil {
		g.log.Warn("connections still open at the drain deadline were closed", "err", err)
	}
	return g.Err()
}
