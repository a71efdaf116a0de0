// Package relay is the one copy loop of fastrojan: it moves bytes both ways between two connections,
// passes a half-close from one side to the other, and ends a connection nobody uses any more.
//
// Each direction reads a chunk into a pooled buffer and writes it out; the one place where a chunk
// has been moved (see copyChunks) is where byte accounting hooks in: PipeOpts adds each chunk to
// caller-supplied counters (per-user accounting, quotas). When both ends are *net.TCPConn the
// direction uses (*net.TCPConn).ReadFrom instead, so Linux splices the bytes in the kernel; counts
// then arrive per deadline window (at most CountWindow with counters) rather than per chunk.
//
// Per byte, the loop keeps system calls few (issue 17, docs/performance.md): a socket is read 64 KiB
// at a time with no peek before the read, and an idle one holds no buffer (readSocket); under a
// *tls.Conn, a BatchConn sends the records of one chunk in one write and lets the loop decrypt every
// record already received into one chunk.
package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrIdle ends a pipe in which no byte moved, in either direction, for the idle timeout; or in which
// one side accepted no byte for that long while the other had something to give it.
var ErrIdle = errors.New("relay: idle timeout")

// BufferSize is the size of the pooled copy buffers: one full TLS record of plaintext, so a chunk read
// from a plain connection becomes one record on a TLS one.
const BufferSize = 16 << 10

// BigBufferSize is the chunk read from a socket (the other side being TLS or another wrapper): four
// records' worth, sealed by one tls.Conn.Write and, with a BatchConn below, sent in one system call.
const BigBufferSize = 64 << 10

// longAgo is a deadline in the past, used to unblock reads and writes when a pipe stops.
var longAgo = time.Unix(1, 0)

// errStopped is what a direction returns when the other one stopped the pipe; it is never reported.
var errStopped = errors.New("relay: stopped")

// Pipe copies both ways until both directions have ended and returns the byte counts.
//
// A direction ends when its source reads EOF; Pipe then half-closes the destination's write side
// (CloseWrite; for a *tls.Conn a close_notify and then CloseWrite on the connection below it, so a FIN
// goes out) and the other direction carries on. If the destination cannot be half-closed the whole
// pipe ends there. Any other error ends the whole pipe and is returned, wrapped with the direction.
//
// With idle > 0 the pipe ends with ErrIdle once no byte has moved either way for idle (a bulk download
// with a silent upload direction is not idle), or when a write makes no progress for idle. Pipe owns
// the deadlines of a and b while it runs and leaves them set when it returns. It does not Close a or b:
// the caller does.
func Pipe(a, b net.Conn, idle time.Duration) (aToB, bToA int64, err error) {
	return run(&pipe{a: a, b: b, idle: idle})
}

// PipeUntilEOF is Pipe for a connection whose end b decides, such as a web site behind the fallback:
// when b's side ends, a's write side is half-closed as in Pipe, what a still sends is passed on for at
// most LeaderGrace (so bytes already on their way reach b, as they would reach a site talked to
// directly), and then the whole pipe ends instead of waiting for a. A web server that has closed its
// connection reads nothing more; waiting for the client would hold the connection open longer than
// the site itself would.
func PipeUntilEOF(a, b net.Conn, idle time.Duration) (aToB, bToA int64, err error) {
	return run(&pipe{a: a, b: b, idle: idle, leader: b})
}

// LeaderGrace is how long PipeUntilEOF keeps passing bytes on after b has ended.
const LeaderGrace = 2 * time.Second

func run(p *pipe) (aToB, bToA int64, err error) {
	a, b, idle := p.a, p.b, p.idle
	p.touch()
	var rd time.Time
	if idle > 0 {
		rd = time.Now().Add(idle)
	}
	for _, c := range []net.Conn{a, b} {
		_ = c.SetWriteDeadline(time.Time{})
		_ = c.SetReadDeadline(rd)
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.copyHalf("b→a", a, b, &bToA, p.countBToA)
	}()
	p.copyHalf("a→b", b, a, &aToB, p.countAToB)
	wg.Wait()
	p.mu.Lock()
	if p.grace != nil {
		p.grace.Stop()
	}
	p.mu.Unlock()
	return aToB, bToA, p.err
}

type pipe struct {
	a, b   net.Conn
	idle   time.Duration
	leader net.Conn     // if set, its EOF ends the whole pipe after LeaderGrace
	grace  *time.Timer  // started by the leader's EOF; guarded by mu
	last   atomic.Int64 // time.Now().UnixNano() of the last chunk moved, either way
	done   atomic.Bool  // set once by stop; both directions then return

	countAToB, countBToA *atomic.Int64 // optional running counters (PipeOpts)
	noSplice             bool          // Options.NoSplice

	mu  sync.Mutex
	err error // the first error that stopped the pipe, if any
}

func (p *pipe) touch() { p.last.Store(time.Now().UnixNano()) }

// stop ends both directions: it records err (if first) and unblocks every pending read and write.
// A direction that sets a deadline checks done afterwards, so a deadline it sets cannot undo this one.
func (p *pipe) stop(err error) {
	p.mu.Lock()
	first := !p.done.Load()
	if first {
		p.err = err
		p.done.Store(true)
	}
	p.mu.Unlock()
	if first {
		_ = p.a.SetDeadline(longAgo)
		_ = p.b.SetDeadline(longAgo)
	}
}

// copyHalf runs one direction to its end and then either half-closes dst or stops the pipe.
func (p *pipe) copyHalf(dir string, dst, src net.Conn, n *int64, count *atomic.Int64) {
	err := p.copy(dst, src, n, count)
	switch {
	case err == nil: // src said EOF
		cwErr := closeWrite(dst)
		if cwErr == nil {
			if src == p.leader {
				p.mu.Lock()
				p.grace = time.AfterFunc(LeaderGrace, func() { p.stop(nil) })
				p.mu.Unlock()
			}
			return
		}
		if errors.Is(cwErr, errors.ErrUnsupported) {
			p.stop(nil)
			return
		}
		p.stop(fmt.Errorf("%s: half-close: %w", dir, cwErr))
	case err == errStopped:
	default:
		p.stop(fmt.Errorf("%s: %w", dir, err))
	}
}

func (p *pipe) copy(dst, src net.Conn, n *int64, count *atomic.Int64) error {
	if d, ok := dst.(*net.TCPConn); ok && !p.noSplice {
		if s, ok := src.(*net.TCPConn); ok {
			return p.splice(d, s, n, count)
		}
	}
	return p.copyChunks(dst, src, n, count)
}

// copyChunks is the general loop: read a chunk, count it, write it.
//
// An idle tunnel should not hold a buffer. Where the source is a socket, the loop reads it itself
// (readSocket): a read that finds nothing gives the buffer back before the poller waits, so the busy
// path costs one read per chunk and the idle one holds nothing. Where the source is TLS with a
// BatchConn below, the loop reads every record already received into one chunk (drain) and, once
// TLS has nothing more, gives the buffer back and waits on the BatchConn, which waits the same way.
func (p *pipe) copyChunks(dst, src net.Conn, n *int64, count *atomic.Int64) error {
	rc := rawConn(src)
	if !readAheadWorks {
		rc = nil // no way to read a socket without holding a buffer here: plain reads
	}
	var batch *BatchConn // found by the first read that can use it (pool.Retry names one once answered)
	var bp *[]byte
	defer func() { chunks.put(bp) }()
	empty := false // batch: TLS has nothing buffered, so waiting on the socket is safe
	full := false  // batch: the next record did not fit in the chunk
	// A direction starts with 16 KiB chunks and takes 64 KiB ones once a chunk came back full: most
	// connections move a few KiB, and a big buffer per connection would cost them (allocation,
	// garbage collection) what it saves a bulk transfer.
	big := false
	for {
		if batch == nil && rc == nil {
			if batch = BatchOf(src); batch != nil && !batch.arm() {
				batch = nil
			}
		}
		var nr int
		var rerr error
		switch {
		case rc != nil:
			// Up to four records' worth at once (once busy): a TLS destination seals them in
			// one tls.Conn.Write (one system call with a BatchConn below).
			bp, nr, rerr = readSocket(rc, chunks, big, false)
		case batch != nil:
			if empty {
				rerr = batch.wait()
			}
			if rerr == nil {
				if bp == nil {
					bp = chunks.get(big)
				}
				if empty { // bytes are waiting below TLS
					nr, rerr = src.Read(*bp)
				}
				if rerr == nil {
					nr, empty, full, rerr = drain(src, batch, *bp, nr)
				}
			}
		default:
			if bp == nil {
				bp = chunks.get(false)
			}
			nr, rerr = src.Read(*bp)
		}
		if nr > 0 {
			if !big && (nr == len(*bp) || full) { // the chunk ran out of room
				big = true
				if wentBig != nil {
					wentBig()
				}
			}
			if err := p.writeChunk(dst, (*bp)[:nr], n, count); err != nil {
				return err
			}
		}
		if rc != nil || empty || big && bp != nil && len(*bp) != BigBufferSize {
			chunks.put(bp) // wait for the next bytes without it; or take a bigger one
			bp = nil
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			if p.done.Load() {
				return errStopped
			}
			if isTimeout(rerr) {
				if err := p.extend(src); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("read: %w", rerr)
		}
	}
}

// wentBig, set only by tests, is called when a direction takes to 64 KiB chunks (once per
// direction, not per chunk: nothing on the copy loop's busy path).
var wentBig func()

// writeChunk writes one chunk that was read, and counts it.
func (p *pipe) writeChunk(dst net.Conn, b []byte, n *int64, count *atomic.Int64) error {
	p.touch()
	if p.idle > 0 {
		_ = dst.SetWriteDeadline(time.Now().Add(p.idle))
	}
	nw, werr := WriteChunk(dst, b)
	*n += int64(nw) // the per-chunk accounting point
	if count != nil {
		count.Add(int64(nw))
	}
	if werr != nil {
		return p.writeErr(werr)
	}
	return nil
}

// drain reads into buf[nr:], from the TLS source src, what can be read without waiting for the
// socket (whole records in TLS's own buffer or in its BatchConn's read-ahead), while a full record
// still fits, or the next one, read ahead, does. empty reports that TLS had nothing more; full, that
// the next record is waiting in the read-ahead and did not fit (the chunk ran out of room). Neither
// when the loop stopped without knowing: TLS may still hold records it read before the BatchConn
// was armed (several in one read), so only a read says it is empty. An error (EOF after
// close_notify, say) is returned with the bytes read before it.
func drain(src net.Conn, batch *BatchConn, buf []byte, nr int) (n int, empty, full bool, err error) {
	for len(buf)-nr >= maxRecordPlaintext || batch.nextFits(len(buf)-nr) {
		batch.noWait = true
		m, err := src.Read(buf[nr:])
		batch.noWait = false
		nr += m
		if err != nil {
			if errors.Is(err, errWouldBlock) {
				return nr, true, false, nil
			}
			return nr, false, false, err
		}
	}
	return nr, false, batch.pending(), nil
}

// maxRecordPlaintext is the most one TLS record carries.
const maxRecordPlaintext = 16 << 10

// BatchOf returns the BatchConn below c: under a *tls.Conn, or the one c's Batch method names
// (pool.Retry, whose connection may change), or nil.
func BatchOf(c net.Conn) *BatchConn {
	switch v := c.(type) {
	case *tls.Conn:
		return batchBelow(v)
	case interface{ Batch() *BatchConn }:
		return v.Batch()
	}
	return nil
}

// WriteChunk writes b to dst as one chunk. When dst is a *tls.Conn with a BatchConn below it, the
// records the chunk is sealed into leave in one system call. It returns how many bytes of b reached
// the connection: for a batch that failed part way, the share of b its written bytes stand for.
// Wrappers that write to a TLS connection of their own (pool.Retry) call it too.
func WriteChunk(dst net.Conn, b []byte) (int, error) {
	tc, ok := dst.(*tls.Conn)
	if !ok {
		return dst.Write(b)
	}
	batch := batchBelow(tc)
	if batch == nil {
		return dst.Write(b)
	}
	batch.hold()
	n, err := dst.Write(b)
	written, held, ferr := batch.flush()
	if err == nil && ferr != nil {
		err = ferr
		if held > 0 {
			n = int(int64(n) * int64(written) / int64(held))
		}
	}
	return n, err
}

// rawConn returns the socket of a source that reads straight from one (a *net.TCPConn, or anything
// exposing syscall.Conn), nil for sources with buffers of their own such as *tls.Conn.
func rawConn(c net.Conn) syscall.RawConn {
	if _, ok := c.(*tls.Conn); ok {
		return nil
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// splice copies between two TCP connections with ReadFrom, which Linux turns into splice(2). The read
// deadline is cut into windows of at most idle/2, so that a direction busy in the kernel still shows
// activity to the other one often enough. A timed-out write is always final: a splice interrupted
// while writing drops what it held in its pipe, so it must not be resumed.
func (p *pipe) splice(dst, src *net.TCPConn, n *int64, count *atomic.Int64) error {
	window := p.idle / 2
	if count != nil {
		window = min(window, CountWindow)
	}
	for {
		var wd time.Time
		if p.idle > 0 {
			now := time.Now()
			wd = now.Add(p.idle)
			rd := time.Unix(0, p.last.Load()).Add(p.idle)
			if w := now.Add(window); w.Before(rd) {
				rd = w
			}
			_ = dst.SetWriteDeadline(wd)
			_ = src.SetReadDeadline(rd)
			if p.done.Load() {
				return errStopped
			}
		}
		m, err := dst.ReadFrom(src)
		*n += m
		if count != nil {
			count.Add(m)
		}
		if m > 0 {
			p.touch()
		}
		if err == nil {
			return nil
		}
		if p.done.Load() {
			return errStopped
		}
		if !isTimeout(err) || p.idle <= 0 {
			return err
		}
		if !time.Now().Before(wd) {
			return fmt.Errorf("write: %w", ErrIdle)
		}
		if time.Since(time.Unix(0, p.last.Load())) >= p.idle {
			return ErrIdle
		}
	}
}

// extend moves src's read deadline to idle after the last activity in either direction, or reports
// ErrIdle when that moment has passed.
func (p *pipe) extend(src net.Conn) error {
	if p.idle <= 0 { // a deadline we did not set: someone else's business, treat as an error
		return fmt.Errorf("read: %w", os.ErrDeadlineExceeded)
	}
	d := time.Unix(0, p.last.Load()).Add(p.idle)
	if !time.Now().Before(d) {
		return ErrIdle
	}
	_ = src.SetReadDeadline(d)
	if p.done.Load() {
		return errStopped
	}
	return nil
}

func (p *pipe) writeErr(err error) error {
	if p.done.Load() {
		return errStopped
	}
	if isTimeout(err) {
		return fmt.Errorf("write: %w", ErrIdle)
	}
	return fmt.Errorf("write: %w", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// closeWrite half-closes c's write side. For TLS that is a close_notify alert followed by a TCP FIN on
// the connection below. It returns an error wrapping errors.ErrUnsupported when c cannot half-close.
func closeWrite(c net.Conn) error {
	switch c := c.(type) {
	case *tls.Conn:
		if err := c.CloseWrite(); err != nil {
			return err
		}
		return closeWrite(c.NetConn())
	case interface{ CloseWrite() error }:
		return c.CloseWrite()
	case interface{ NetConn() net.Conn }:
		return closeWrite(c.NetConn())
	}
	return fmt.Errorf("%T cannot half-close: %w", c, errors.ErrUnsupported)
}

// CloseWrite half-closes c the way Pipe does when its other side reads EOF. Callers that end a
// connection outside Pipe use it so a peer sees the same orderly end (close_notify, then FIN).
func CloseWrite(c net.Conn) error { return closeWrite(c) }

// OnFreshStack runs f on a goroutine of its own and waits for it. Setup work (a TLS handshake's
// crypto, a Trojan request, a deep call chain) grows a goroutine's stack to 8–32 KiB, and the
// goroutine that goes on to relay for hours would keep it (stacks shrink only at garbage
// collections, and only when less than a quarter is in use): run there, it costs each idle tunnel
// 4–8 KiB (BenchmarkIdleTunnelRSS). The server runs a connection's whole TLS setup this way and
// gets its relay back to run; the client its Trojan request. f must return on its own (a deadline
// bounds it).
func OnFreshStack(f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	return <-done
}
