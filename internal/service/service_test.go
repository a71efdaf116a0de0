package service

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder notes the order in which parts stop.
type recorder struct {
	mu      sync.Mutex
	stopped []string
}

func (r *recorder) part(name string, run func(stop <-chan struct{}) error) Part {
	stop := make(chan struct{})
	p := Part{Name: name, Stop: func(ctx context.Context) error {
		r.mu.Lock()
		r.stopped = append(r.stopped, name)
		r.mu.Unlock()
		close(stop)
		return nil
	}}
	if run != nil {
		p.Run = func() error { return run(stop) }
	}
	return p
}

func waitStop(stop <-chan struct{}) error { <-stop; return nil }

// Parts stop in reverse order, once, and Close waits for every Run; Close again returns the same.
func TestGroupStopsInReverseOnce(t *testing.T) {
	r := &recorder{}
	g := Start(nil, r.part("a", nil), r.part("b", waitStop), r.part("c", waitStop))
	select {
	case <-g.Done():
		t.Fatal("done before Close")
	default:
	}
	if err := g.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	<-g.Done()
	if want := []string{"c", "b", "a"}; !slices.Equal(r.stopped, want) {
		t.Fatalf("stopped %v, want %v", r.stopped, want)
	}
	if g.Err() != nil {
		t.Fatalf("Err %v after a plain Close", g.Err())
	}
}

// A part that fails on its own ends Run, which stops the others and reports which part failed.
func TestRunEndsWhenAPartFails(t *testing.T) {
	r := &recorder{}
	broken := errors.New("listener broke")
	err := Run(context.Background(), nil, time.Second,
		r.part("endpoint", nil),
		r.part("server", func(<-chan struct{}) error { return broken }))
	if !errors.Is(err, broken) || err.Error() != "server: listener broke" {
		t.Fatalf("Run = %v, want the server's failure", err)
	}
	if want := []string{"server", "endpoint"}; !slices.Equal(r.stopped, want) {
		t.Fatalf("stopped %v, want %v", r.stopped, want)
	}
}

// One bound for all: a part that takes its whole share leaves the next ones an expired context,
// and Close returns within the bound.
func TestCloseWithinOneBound(t *testing.T) {
	var late error
	slow := Part{Name: "slow", Stop: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	next := Part{Name: "next", Stop: func(ctx context.Context) error { late = ctx.Err(); return nil }}
	g := Start(nil, next, slow)
	start := time.Now()
	err := g.Close(100 * time.Millisecond)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Close took %s with a 100ms bound", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(late, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, next part saw %v; want the bound's deadline for both", err, late)
	}
}

// Run returns nil when its context ends and every part stopped cleanly.
func TestRunUntilContextEnds(t *testing.T) {
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, nil, time.Second, r.part("server", waitStop)) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
