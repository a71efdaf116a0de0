package relay

import (
	"testing"
	"time"
)

// The idle timer fires once after the timeout without a Touch, not while touches keep coming; a nil
// timer ignores every call.
func TestIdleTimer(t *testing.T) {
	fired := make(chan time.Time, 2)
	it := NewIdleTimer(200*time.Millisecond, func() { fired <- time.Now() })
	it.Start()
	defer it.Stop()
	start := time.Now()
	var last time.Time
	for time.Since(start) < 300*time.Millisecond {
		last = time.Now()
		it.Touch()
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-fired:
		t.Fatal("fired while touched")
	default:
	}
	select {
	case at := <-fired:
		if at.Sub(last) < 200*time.Millisecond {
			t.Fatalf("fired %v after the last touch, want ≥ 200ms", at.Sub(last))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("never fired")
	}
	select {
	case <-fired:
		t.Fatal("fired twice")
	case <-time.After(150 * time.Millisecond):
	}
	var none *IdleTimer
	none.Touch()
	none.Start()
	none.Stop()
}
