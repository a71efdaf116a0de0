// Package pool keeps a few spare connections to the Trojan server, with TCP and TLS already done,
// while an application is active, so that a new stream sends its request at once and reaches its
// first byte after one round trip (plus the server's own dial) instead of two (DESIGN.md 3.11).
//
// Rules, because a spare is only useful while the server still reads it as Trojan:
//   - spares are opened on demand, after a stream started (never on an idle client), and only while
//     streams came within Linger;
//   - the number kept follows the burst: as many as streams arrived during the last two spare
//     opening times, plus one, at most Spares;
//   - a spare is retired at MaxAge, or earlier once the pool has seen the server close spares: it
//     then retires them at 60% of the age at which the server closed one;
//   - before a spare is handed out, its socket is checked for a FIN or reset from the server.
//
// Retry (retry.go) covers the last window: a stream on a spare that fails before any response byte
// is sent again once on a fresh connection.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults, chosen from measurements (README "Warm path").
const (
	DefaultSpares = 8
	DefaultLinger = 10 * time.Second
	DefaultMaxAge = 3 * time.Second
)

// Timing the pool works with.
const (
	tick           = 100 * time.Millisecond // how often spares are checked while any are held
	learnedFactor  = 0.6                    // retire at this share of the age the server closed a spare at
	learnedMemory  = 5 * time.Minute        // a learned limit is forgotten after this long without a new one
	minRetireAge   = 200 * time.Millisecond // below this a spare is not worth keeping
	initialOpening = 250 * time.Millisecond // assumed spare opening time before one was measured
)

// Dial opens a connection to the server with TCP and TLS done (no request sent yet).
type Dial func(ctx context.Context) (net.Conn, error)

// Options configure a Pool.
type Options struct {
	// Spares is the most spare connections kept ready at once; 0 turns the pool off (New returns nil).
	Spares int
	// Linger is how long after the last stream spares are still kept and replaced. Default DefaultLinger.
	Linger time.Duration
	// MaxAge retires a spare unused for this long: it must stay below the shortest time a server waits
	// for the request of a silent connection (Xray: 4 s). Default DefaultMaxAge.
	MaxAge time.Duration
	// DialTimeout bounds the opening of a spare. Default 10s.
	DialTimeout time.Duration
	Logger      *slog.Logger
}

// Stats are the pool's counters since New. Ready and Opening are gauges.
type Stats struct {
	Hits       int64 // streams that got a ready spare
	Joined     int64 // streams that took a spare still being opened
	Misses     int64 // streams that opened their own connection
	Opened     int64 // spares opened successfully
	Failed     int64 // spare openings that failed
	Retired    int64 // spares closed unused by the pool (age, linger, shutdown)
	PeerClosed int64 // spares the server closed (or reset) before use
	Retried    int64 // streams on a spare sent again on a fresh connection
	Ready      int64 // spares ready now
	Opening    int64 // spares being opened that no stream waits for yet
	// LearnedLimit is the shortest age at which the server was seen closing a spare (0: none seen).
	LearnedLimit time.Duration
}

// Pool holds spare connections. Its methods are safe for concurrent use; a nil *Pool dials every
// stream itself.
type Pool struct {
	dial Dial
	opts Options
	log  *slog.Logger

	ctx    context.Context // cancelled by Close: aborts openings
	cancel context.CancelFunc
	wg     sync.WaitGroup // the maintenance goroutine and every opening
	wake   chan struct{}  // nudges the maintenance goroutine

	mu       sync.Mutex
	closed   bool
	spares   []*spare   // oldest first
	opening  []*opening // spares being opened, oldest first
	lastUse  time.Time
	uses     []time.Time // stream starts within the recent window, oldest first
	openTime time.Duration
	learned  time.Duration // shortest age the server closed a spare at; 0 unknown
	learnAt  time.Time
	// pendingGet: a TryGet found nothing and its caller's Get follows, already counted. A flag, not
	// a count: a lost race between two such pairs only miscounts one stream of demand.
	pendingGet bool

	hits, joined, misses, opened, failed, retired, peerClosed, retried atomic.Int64
}

type spare struct {
	conn net.Conn
	born time.Time // when its dial started: the server's silence clock starts no earlier
}

// opening is a spare being opened; a stream may claim it and wait for it.
type opening struct {
	born    time.Time
	done    chan struct{} // closed when conn/err are set
	conn    net.Conn
	err     error
	claimed bool // guarded by Pool.mu
}

// New returns a pool of spare connections opened by dial, or nil if opts.Spares is 0.
func New(dial Dial, opts Options) *Pool {
	if opts.Spares <= 0 {
		return nil
	}
	if opts.Linger <= 0 {
		opts.Linger = DefaultLinger
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{dial: dial, opts: opts, log: opts.Logger, ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), openTime: initialOpening}
	p.wg.Add(1)
	go p.maintain()
	return p
}

// ErrClosed is returned by Get after Close.
var ErrClosed = errors.New("pool: closed")

// TryGet returns a ready spare that is still open, or nil without waiting; either way it counts a
// stream. A caller that gets nil calls Get, which then does not count the stream again; TryGet opens
// the spares it expects at once then. A caller that gets a spare calls Answered when its stream got
// the server's first byte (Retry.WhenAnswered does), and only then are the spares it expects opened:
// a spare opened together with the stream's request would have its TLS handshake computed by client
// and server exactly while they handle that request and its answer (about 1 ms of server CPU per
// spare; in the lab +0.05 RTT on the stream at 20 ms). The maintenance tick refills anyway should no
// answer come. It lets a stream with a spare at hand go on without handing over to another goroutine.
func (p *Pool) TryGet() net.Conn {
	if p == nil {
		return nil
	}
	now := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.noteUse(now)
	conn, stale := p.takeLocked(now)
	if conn == nil {
		p.pendingGet = true // the caller's Get follows
		p.refillLocked(now)
	}
	p.mu.Unlock()
	for _, c := range stale {
		_ = c.Close()
	}
	if conn != nil {
		p.hits.Add(1)
	}
	return conn
}

// takeLocked pops the oldest spare that is young enough and still open; it returns the spares it
// dropped on the way, for the caller to close outside the lock. Called with mu held.
func (p *Pool) takeLocked(now time.Time) (conn net.Conn, stale []net.Conn) {
	for len(p.spares) > 0 && conn == nil {
		s := p.spares[0]
		p.spares = p.spares[1:]
		age := now.Sub(s.born)
		switch {
		case age >= p.retireAge(now):
			p.retired.Add(1)
			stale = append(stale, s.conn)
		case !alive(s.conn):
			p.peerClosedLocked(age, now)
			stale = append(stale, s.conn)
		default:
			conn = s.conn
		}
	}
	return conn, stale
}

// Get returns a connection for a new stream: a ready spare if one is still open (pooled true), else
// one being opened, else a new one it dials itself. It then opens spares for the streams it expects.
func (p *Pool) Get(ctx context.Context) (conn net.Conn, pooled bool, err error) {
	now := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, false, ErrClosed
	}
	if p.pendingGet { // TryGet counted this stream already
		p.pendingGet = false
	} else {
		p.noteUse(now)
	}
	conn, stale := p.takeLocked(now)
	var claim *opening
	if conn == nil {
		for _, o := range p.opening {
			if !o.claimed {
				o.claimed, claim = true, o
				break
			}
		}
	}
	p.refillLocked(now)
	p.mu.Unlock()
	for _, c := range stale {
		_ = c.Close()
	}
	if conn != nil {
		p.hits.Add(1)
		return conn, true, nil
	}
	if claim != nil {
		select {
		case <-claim.done:
			if claim.err == nil {
				p.joined.Add(1)
				return claim.conn, true, nil
			}
		case <-ctx.Done():
			go func() { // the opening goroutine finishes soon; close what it brings
				<-claim.done
				if claim.conn != nil {
					_ = claim.conn.Close()
				}
			}()
			return nil, false, ctx.Err()
		}
	}
	p.misses.Add(1)
	start := time.Now()
	conn, err = p.dial(ctx)
	if err == nil {
		p.noteOpenTime(time.Since(start))
	}
	return conn, false, err
}

// Answered opens the spares the pool wants now; a stream that took a spare from TryGet calls it once
// the server answered (or the stream ended without an answer).
func (p *Pool) Answered() {
	if p == nil {
		return
	}
	p.mu.Lock()
	if !p.lastUse.IsZero() && time.Since(p.lastUse) < p.opts.Linger {
		p.refillLocked(time.Now())
	}
	p.mu.Unlock()
}

// NoteRetry counts a stream on a spare that was sent again on a fresh connection (Retry).
func (p *Pool) NoteRetry() {
	if p != nil {
		p.retried.Add(1)
	}
}

// Stats returns the counters.
func (p *Pool) Stats() Stats {
	if p == nil {
		return Stats{}
	}
	p.mu.Lock()
	ready, opening, learned := len(p.spares), 0, p.learned
	for _, o := range p.opening {
		if !o.claimed { // a claimed opening is already a stream's connection
			opening++
		}
	}
	p.mu.Unlock()
	return Stats{Hits: p.hits.Load(), Joined: p.joined.Load(), Misses: p.misses.Load(),
		Opened: p.opened.Load(), Failed: p.failed.Load(), Retired: p.retired.Load(),
		PeerClosed: p.peerClosed.Load(), Retried: p.retried.Load(),
		Ready: int64(ready), Opening: int64(opening), LearnedLimit: learned}
}

// Close closes every spare, aborts openings and waits for the pool's goroutines. It is idempotent.
func (p *Pool) Close() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	spares := p.spares
	p.spares = nil
	p.mu.Unlock()
	p.cancel()
	for _, s := range spares {
		p.retired.Add(1)
		_ = s.conn.Close()
	}
	p.wg.Wait()
	return nil
}

// noteUse records a stream start. Called with mu held.
func (p *Pool) noteUse(now time.Time) {
	p.lastUse = now
	p.uses = append(p.uses, now)
	p.trimUses(now)
}

// trimUses forgets stream starts older than the demand window. Called with mu held.
func (p *Pool) trimUses(now time.Time) {
	window := p.window()
	i := 0
	for i < len(p.uses) && now.Sub(p.uses[i]) > window {
		i++
	}
	if i > 0 {
		p.uses = append(p.uses[:0], p.uses[i:]...)
	}
	if len(p.uses) > 4*p.opts.Spares+16 { // bound memory in a flood; the target is capped anyway
		p.uses = append(p.uses[:0], p.uses[len(p.uses)-(4*p.opts.Spares+16):]...)
	}
}

// window is the span over which demand is measured: two spare opening times, at least 100 ms.
func (p *Pool) window() time.Duration { return max(2*p.openTime, 100*time.Millisecond) }

// target is how many spares (ready or opening) the pool wants now: the streams that started within
// the last two opening times, plus one, at most Spares; none once Linger has passed since the last
// stream. Twice the streams expected during one opening lets a burst find spares ready rather than
// still opening (measured: 30 streams in 300 ms at 20 ms RTT all ready with Spares 8).
// Called with mu held.
func (p *Pool) target(now time.Time) int {
	if p.lastUse.IsZero() || now.Sub(p.lastUse) >= p.opts.Linger {
		return 0
	}
	p.trimUses(now)
	n := len(p.uses) + 1
	return min(n, p.opts.Spares)
}

// retireAge is the age at which a spare is closed unused. Called with mu held.
func (p *Pool) retireAge(now time.Time) time.Duration {
	age := p.opts.MaxAge
	if p.learned > 0 {
		if now.Sub(p.learnAt) > learnedMemory {
			p.learned = 0
		} else {
			age = min(age, time.Duration(float64(p.learned)*learnedFactor))
		}
	}
	return max(age, minRetireAge)
}

// peerClosedLocked counts a spare the server closed at age and learns from it. Called with mu held.
func (p *Pool) peerClosedLocked(age time.Duration, now time.Time) {
	p.peerClosed.Add(1)
	if p.learned == 0 || age < p.learned {
		p.learned = age
		p.log.Info("server closes silent connections; retiring spares earlier",
			"closed_at_age", age.Round(time.Millisecond), "retire_at", p.retireAgeUnlocked())
	}
	p.learnAt = now
}

func (p *Pool) retireAgeUnlocked() time.Duration {
	return max(min(p.opts.MaxAge, time.Duration(float64(p.learned)*learnedFactor)), minRetireAge).Round(time.Millisecond)
}

func (p *Pool) noteOpenTime(d time.Duration) {
	p.mu.Lock()
	p.openTime = (3*p.openTime + d) / 4
	p.mu.Unlock()
}

// refillLocked starts openings until ready plus opening spares reach the target. Called with mu held.
func (p *Pool) refillLocked(now time.Time) {
	if p.closed {
		return
	}
	have := len(p.spares)
	for _, o := range p.opening {
		if !o.claimed {
			have++
		}
	}
	for ; have < p.target(now); have++ {
		o := &opening{born: now, done: make(chan struct{})}
		p.opening = append(p.opening, o)
		p.wg.Add(1)
		go p.open(o)
	}
	p.nudge()
}

func (p *Pool) nudge() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// open opens one spare and either hands it to the stream that claimed it or keeps it.
func (p *Pool) open(o *opening) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(p.ctx, p.opts.DialTimeout)
	conn, err := p.dial(ctx)
	cancel()
	if err == nil {
		p.opened.Add(1)
		p.noteOpenTime(time.Since(o.born))
	} else {
		p.failed.Add(1)
		p.log.Debug("opening a spare connection failed", "err", err)
	}
	p.mu.Lock()
	for i, x := range p.opening {
		if x == o {
			p.opening = append(p.opening[:i], p.opening[i+1:]...)
			break
		}
	}
	claimed := o.claimed
	keep := err == nil && !claimed && !p.closed
	if keep {
		p.spares = append(p.spares, &spare{conn: conn, born: o.born})
	}
	o.conn, o.err = conn, err
	if err == nil && !claimed && !keep {
		o.conn, o.err = nil, ErrClosed
	}
	close(o.done)
	p.mu.Unlock()
	if err == nil && !claimed && !keep {
		p.retired.Add(1)
		_ = conn.Close()
	}
}

// maintain runs until Close: while spares are held it checks them every tick, retires the old,
// learns from the ones the server closed, and keeps the target while streams are recent.
func (p *Pool) maintain() {
	defer p.wg.Done()
	t := time.NewTimer(tick)
	defer t.Stop()
	for {
		p.mu.Lock()
		busy := len(p.spares) > 0 || len(p.opening) > 0 || (!p.lastUse.IsZero() && time.Since(p.lastUse) < p.opts.Linger)
		p.mu.Unlock()
		var timer <-chan time.Time
		if busy {
			t.Reset(tick)
			timer = t.C
		}
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
			continue
		case <-timer:
		}
		p.check()
	}
}

// check retires spares that are too old, counts those the server closed, and refills.
func (p *Pool) check() {
	now := time.Now()
	var drop []net.Conn
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	lingering := !p.lastUse.IsZero() && now.Sub(p.lastUse) < p.opts.Linger
	keep := p.spares[:0]
	for _, s := range p.spares {
		age := now.Sub(s.born)
		switch {
		case !lingering || age >= p.retireAge(now):
			p.retired.Add(1)
			drop = append(drop, s.conn)
		case !alive(s.conn):
			p.peerClosedLocked(age, now)
			drop = append(drop, s.conn)
		default:
			keep = append(keep, s)
		}
	}
	clear(p.spares[len(keep):])
	p.spares = keep
	if lingering {
		p.refillLocked(now)
	}
	p.mu.Unlock()
	for _, c := range drop {
		_ = c.Close()
	}
}

// String describes the options, for the client's first log line.
func (o Options) String() string {
	return fmt.Sprintf("spares=%d linger=%s max_age=%s", o.Spares, o.Linger, o.MaxAge)
}
