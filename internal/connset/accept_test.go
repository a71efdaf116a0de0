package connset

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// The accept retry policy: real errnos (wrapped as net.Accept wraps them) are retried with a
// doubling back-off capped at 1 s; a closed or broken listener is not.
func TestBackoff(t *testing.T) {
	wrap := func(errno syscall.Errno) error {
		return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
	}
	var b Backoff
	var got []time.Duration
	for range 10 {
		d, ok := b.Next(wrap(syscall.EMFILE))
		if !ok {
			t.Fatal("EMFILE not retried")
		}
		got = append(got, d)
	}
	if got[0] != 5*time.Millisecond || got[1] != 10*time.Millisecond || got[9] != time.Second {
		t.Fatalf("back-off %v: want 5ms, 10ms, … capped at 1s", got)
	}
	b.Reset()
	if d, _ := b.Next(wrap(syscall.ECONNABORTED)); d != 5*time.Millisecond {
		t.Fatalf("after Reset: %v, want 5ms", d)
	}
	for _, err := range []error{net.ErrClosed, wrap(syscall.EINVAL), fmt.Errorf("x: %w", errors.New("other"))} {
		if _, ok := b.Next(err); ok {
			t.Errorf("%v retried", err)
		}
	}
}

// Sleep ends when the shutdown begins, so an accept loop does not sleep through it.
func TestSleepEndsWithShutdown(t *testing.T) {
	s := New()
	if !s.Sleep(time.Millisecond) {
		t.Fatal("a short sleep did not run its course")
	}
	go s.BeginShutdown()
	start := time.Now()
	if s.Sleep(time.Hour) {
		t.Fatal("Sleep reported a full hour")
	}
	t.Logf("woke %v after the shutdown began", time.Since(start))
}
