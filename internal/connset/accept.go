package connset

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Backoff is the accept loops' retry policy, the same for the server and the client: after an
// Accept error worth retrying, wait 5 ms, doubling up to 1 s while errors continue; any other error
// ends the loop. The zero value is ready.
type Backoff struct{ d time.Duration }

// Next returns how long to wait before accepting again after err, and false when err is not worth
// retrying.
func (b *Backoff) Next(err error) (time.Duration, bool) {
	if !Retryable(err) {
		return 0, false
	}
	b.d = min(max(2*b.d, 5*time.Millisecond), time.Second)
	return b.d, true
}

// Reset starts the doubling over, after an Accept that worked.
func (b *Backoff) Reset() { b.d = 0 }

// Retryable reports whether an Accept error is worth retrying: out of file descriptors, buffers or
// memory, a connection that died in the backlog, or a timeout.
func Retryable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNRESET} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Sleep waits d, or until the shutdown begins; it reports whether the whole d passed.
func (s *Set) Sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}
