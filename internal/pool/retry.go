package pool

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fastrojan/fastrojan/internal/relay"
)

// MaxReplay bounds what Retry keeps of the bytes written after the request, to send them again on
// the fresh connection; a stream that writes more before the server answers is not retried.
const MaxReplay = 64 << 10

// Retry is the connection of a stream sent on a spare. If it fails (EOF, reset, broken pipe) before
// the server's first byte arrives and within Window of the request, the stream is sent again, once,
// on the connection Redial opens (which must carry the request and its first payload again), followed
// by every byte written through Retry since. A spare the server closed just as the stream took it
// therefore costs a round trip more, never a failed stream.
//
// Retry is safe for one reader and one writer at a time, as the relay uses it.
type Retry struct {
	redial  func() (net.Conn, error)
	onRetry func()
	expires time.Time // no retry for a failure after this

	answered  atomic.Bool // a byte came from the server: the stream stands, no retry
	closed    atomic.Bool
	onAnswer  func()    // WhenAnswered
	once      sync.Once // runs onAnswer
	answerDue bool      // the reader's: the first bytes were returned, onAnswer is for the next Read

	mu       sync.Mutex // serializes writes with the switch to a fresh connection
	replay   []byte     // written since the request, kept while not answered
	replayOK bool
	retried  bool
	halfDone bool // CloseWrite was called

	dmu    sync.Mutex // guards cur and the deadlines, applied again to a fresh connection
	cur    net.Conn
	rd, wd time.Time
}

// NewRetry wraps conn, on which the request was just written. window bounds how long after now a
// failure still counts as the spare's fault; onRetry, if set, is called when the stream is resent.
func NewRetry(conn net.Conn, window time.Duration, redial func() (net.Conn, error), onRetry func()) *Retry {
	return &Retry{cur: conn, redial: redial, onRetry: onRetry, expires: time.Now().Add(window), replayOK: true}
}

// RetryWindow is how long after a stream took a spare a failure is still blamed on the spare: a
// closed spare answers the request with a reset within a round trip, so two opening times (about
// two round trips) plus a margin.
func (p *Pool) RetryWindow() time.Duration {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return 2*p.openTime + 200*time.Millisecond
}

// WhenAnswered makes Retry call f once: after the server's first bytes were handed on (at the Read
// that follows the one that returned them), or at Close if none came. Call it before the stream is
// used. f may start work (the pool opens a replacement spare): deferred so, that work does not run
// between the answer's arrival and its write to the application, where on a 2-core machine it
// competed with the application's wake-up for the CPU.
func (r *Retry) WhenAnswered(f func()) *Retry {
	r.onAnswer = f
	return r
}

func (r *Retry) answer() {
	if r.onAnswer != nil {
		r.once.Do(r.onAnswer)
	}
}

// release drops what was kept for a resend once the server has answered: the bytes written since
// the request and the redial function, which holds the request's first payload (often the
// application's TLS ClientHello, 0.5-2 KB). An idle tunnel would otherwise keep them for its life.
// A Write in progress holds mu (it may be blocked on the network, and the reader must not wait for
// it): it drops them itself.
func (r *Retry) release() {
	if r.mu.TryLock() {
		r.dropResendLocked()
		r.mu.Unlock()
	}
}

// dropResendLocked forgets what a resend would need. Called with mu held.
func (r *Retry) dropResendLocked() { r.replay, r.redial, r.onRetry = nil, nil, nil }

func (r *Retry) conn() net.Conn {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	return r.cur
}

// Read reads from the server; a failure before the first byte may switch to a fresh connection.
func (r *Retry) Read(b []byte) (int, error) {
	if r.answerDue {
		r.answerDue = false
		r.answer()
	}
	for {
		c := r.conn()
		n, err := c.Read(b)
		if n > 0 {
			if !r.answered.Load() {
				r.answered.Store(true)
				r.answerDue = true
				r.release()
			}
			return n, err
		}
		if err == nil || r.answered.Load() || len(b) == 0 {
			return n, err
		}
		r.mu.Lock()
		ok := r.retryLocked(c, err)
		r.mu.Unlock()
		if !ok {
			return n, err
		}
	}
}

// Write writes to the server, keeping the bytes for a resend until the server answers.
func (r *Retry) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.answered.Load() && r.replayOK {
		if len(r.replay)+len(b) > MaxReplay {
			r.replay, r.replayOK = nil, false
		} else {
			r.replay = append(r.replay, b...)
		}
	} else if r.redial != nil { // no resend can come now: forget once, not at every write
		r.dropResendLocked()
	}
	c := r.conn()
	n, err := relay.WriteChunk(c, b)
	if err != nil && !r.answered.Load() && r.retryLocked(c, err) {
		return len(b), nil // b went out on the fresh connection with the replay
	}
	return n, err
}

// retryLocked switches from failed to a fresh connection if the rules allow; it reports whether the
// caller should go on with the current connection. Called with mu held.
func (r *Retry) retryLocked(failed net.Conn, err error) bool {
	if r.conn() != failed {
		return true // the other direction switched already
	}
	if r.retried || !r.replayOK || r.closed.Load() || r.answered.Load() || !retryable(err) || time.Now().After(r.expires) {
		return false
	}
	r.retried = true
	fresh, derr := r.redial()
	if derr != nil {
		return false
	}
	if len(r.replay) > 0 {
		if _, werr := fresh.Write(r.replay); werr != nil {
			_ = fresh.Close()
			return false
		}
	}
	if r.halfDone {
		_ = relay.CloseWrite(fresh)
	}
	r.dmu.Lock()
	if !r.rd.IsZero() {
		_ = fresh.SetReadDeadline(r.rd)
	}
	if !r.wd.IsZero() {
		_ = fresh.SetWriteDeadline(r.wd)
	}
	r.cur = fresh
	r.dmu.Unlock()
	_ = failed.Close()
	if r.closed.Load() {
		_ = fresh.Close()
	}
	if r.onRetry != nil {
		r.onRetry()
	}
	return true
}

// retryable reports failures that mean the server is gone: not timeouts (the relay's own deadlines).
func retryable(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// CloseWrite half-closes the current connection (and a fresh one, should the stream be resent).
func (r *Retry) CloseWrite() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.halfDone = true
	return relay.CloseWrite(r.conn())
}

// Close closes the current connection.
func (r *Retry) Close() error {
	r.closed.Store(true)
	err := r.conn().Close()
	r.answer()
	return err
}

func (r *Retry) LocalAddr() net.Addr  { return r.conn().LocalAddr() }
func (r *Retry) RemoteAddr() net.Addr { return r.conn().RemoteAddr() }

func (r *Retry) SetDeadline(t time.Time) error {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	r.rd, r.wd = t, t
	return r.cur.SetDeadline(t)
}

func (r *Retry) SetReadDeadline(t time.Time) error {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	r.rd = t
	return r.cur.SetReadDeadline(t)
}

func (r *Retry) SetWriteDeadline(t time.Time) error {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	r.wd = t
	return r.cur.SetWriteDeadline(t)
}

// Batch names the BatchConn below the connection once the server has answered, when the connection
// can no longer change, so the relay may read it ahead (relay.BatchOf); nil before.
func (r *Retry) Batch() *relay.BatchConn {
	if !r.answered.Load() {
		return nil
	}
	return relay.BatchOf(r.conn())
}
