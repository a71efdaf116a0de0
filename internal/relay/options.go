package relay

import (
	"net"
	"sync/atomic"
	"time"
)

// Options configure PipeOpts.
type Options struct {
	// Idle is the idle timeout, as the idle argument of Pipe.
	Idle time.Duration
	// UntilEOF makes b's end end the pipe, as PipeUntilEOF does.
	UntilEOF bool
	// AToB and BToA, when set, get every chunk's bytes added as soon as it has been written, so an
	// observer (per-user accounting, quotas) sees a long connection's traffic while it runs. Several
	// pipes may share one counter. On the splice path (both ends *net.TCPConn) bytes are added at
	// least every CountWindow while Idle > 0.
	AToB, BToA *atomic.Int64
	// NoSplice copies through user space even between two *net.TCPConn. For short exchanges (a
	// prober's request and a page) splice saves nothing, and each splicing direction takes a pipe pair
	// (two file descriptors) that Go pools until two garbage collections: a burst of short relays
	// leaves thousands of descriptors open for a long while.
	NoSplice bool
}

// CountWindow is the longest the splice path holds bytes back from a counter while Idle > 0.
const CountWindow = time.Second

// PipeOpts is Pipe (or PipeUntilEOF) with options; the returned counts are this pipe's alone.
func PipeOpts(a, b net.Conn, o Options) (aToB, bToA int64, err error) {
	p := &pipe{a: a, b: b, idle: o.Idle, countAToB: o.AToB, countBToA: o.BToA, noSplice: o.NoSplice}
	if o.UntilEOF {
		p.leader = b
	}
	return run(p)
}
