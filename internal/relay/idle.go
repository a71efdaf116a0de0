package relay

import (
	"math"
	"sync/atomic"
	"time"
)

// IdleTimer calls onIdle, once, after nothing was Touched for its timeout: the UDP idle timer of the
// client's sessions and the server's associations (trojan-gfw's udp_timeout). Touch is one atomic
// store, cheap enough for every datagram; the timer re-arms itself for what is left of the timeout.
// A nil *IdleTimer ignores every call.
type IdleTimer struct {
	timeout time.Duration
	onIdle  func()
	last    atomic.Int64 // unix nanoseconds of the last Touch
	t       *time.Timer
}

// NewIdleTimer returns a timer that counts as touched now and is not armed yet: Start arms it.
func NewIdleTimer(timeout time.Duration, onIdle func()) *IdleTimer {
	it := &IdleTimer{timeout: timeout, onIdle: onIdle}
	it.Touch()
	it.t = time.AfterFunc(math.MaxInt64, it.check) // armed by Start, once it.t is set
	return it
}

// Start arms the timer.
func (it *IdleTimer) Start() {
	if it != nil {
		it.t.Reset(it.timeout)
	}
}

// Touch records activity now.
func (it *IdleTimer) Touch() {
	if it != nil {
		it.last.Store(time.Now().UnixNano())
	}
}

// Stop disarms the timer; onIdle is not called after Stop returns unless it already started.
func (it *IdleTimer) Stop() {
	if it != nil {
		it.t.Stop()
	}
}

func (it *IdleTimer) check() {
	quiet := time.Since(time.Unix(0, it.last.Load()))
	if quiet < it.timeout {
		it.t.Reset(it.timeout - quiet)
		return
	}
	it.onIdle()
}
