package users

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// Record is one row of trojan-gfw's `users` table, as far as the server cares.
type Record struct {
	Hash     trojan.Hash
	Quota    int64 // bytes; negative means unlimited
	Download int64 // bytes sent to the client so far
	Upload   int64 // bytes received from the client so far
}

// Delta is what to add to one user's download and upload columns.
type Delta struct {
	Hash     trojan.Hash
	Download int64
	Upload   int64
}

// Batch is a set of deltas written in one transaction. ID makes the write idempotent: the backend
// records it in the same transaction, and a batch whose ID is already recorded is not applied again.
type Batch struct {
	ID     string
	Deltas []Delta
}

// Backend is the database behind a Ledger. Both calls may be slow or fail; the Ledger never calls them
// on the authentication path.
type Backend interface {
	// Users returns every row of the users table.
	Users(ctx context.Context) ([]Record, error)
	// Apply adds each delta (`download = download + ?`) and records b.ID, all in one transaction. When
	// b.ID was recorded before it changes nothing and returns nil, so a batch whose outcome was unknown
	// can be retried without counting twice.
	Apply(ctx context.Context, b Batch) error
	Close() error
}

// Defaults for zero LedgerOptions fields.
const (
	DefaultRefresh   = 2 * time.Second
	DefaultFlush     = 10 * time.Second
	DefaultOpTimeout = 10 * time.Second
	// Tick is how often counts are collected from open connections, quotas checked and the journal
	// written. A user over quota or deleted loses its connections within Tick of the Ledger knowing.
	Tick = 500 * time.Millisecond
)

// LedgerOptions configure a Ledger. Backend is required.
type LedgerOptions struct {
	Backend Backend
	// Static holds the config file's passwords: always accepted, unlimited, not counted in the database
	// (as trojan-gfw does). May be nil.
	Static *Static
	// Refresh is how often the users table is read again (default 2s): a new user works, and a deleted
	// one stops working, within about this long.
	Refresh time.Duration
	// Flush is how often counts are written to the database (default 10s).
	Flush time.Duration
	// Journal is a file where counts not yet in the database are kept across restarts and crashes
	// (written every Tick while there are any). Empty: none, so a SIGKILL loses what was not flushed.
	// Each process needs its own file.
	Journal string
	// OpTimeout bounds one database call (default 10s).
	OpTimeout time.Duration
	Logger    *slog.Logger
}

// LedgerStats describe the health of a Ledger.
type LedgerStats struct {
	Users         int       // rows in the last snapshot
	LastRefresh   time.Time // zero if the table was never read
	LastFlush     time.Time // last successful write of counts; zero if none yet
	PendingBytes  int64     // counted but not yet known to be in the database
	RefreshErrors int64
	FlushErrors   int64
}

// Ledger is a Store backed by a database: it answers Lookup from an in-memory snapshot of the users
// table (so authentication never waits on the database), counts each user's bytes, enforces quotas
// during connections, and writes counts back in idempotent batches. It is safe for concurrent use.
type Ledger struct {
	opts LedgerOptions
	log  *slog.Logger

	snap atomic.Pointer[map[trojan.Hash]*account] // present users only; replaced on each refresh

	mu       sync.Mutex
	accts    map[trojan.Hash]*account // every account with counts or sessions, present or not
	pending  map[trojan.Hash]*Delta   // harvested, not yet in a batch
	inflight *Batch                   // being written; kept until the database confirms it
	dirty    bool                     // journal out of date

	lastRefresh, lastFlush    atomic.Int64 // unix nanoseconds
	refreshErrs, flushErrs    atomic.Int64
	pendingBytes              atomic.Int64
	stop                      chan struct{}
	flushNow                  chan struct{} // a user crossed its quota: write counts at once (farm.go)
	wg                        sync.WaitGroup
	closeOnce                 sync.Once
	closeErr                  error
	refreshFailing, flushFail bool // owned by the db goroutine: log transitions only
}

var _ Accountant = (*Ledger)(nil)

// account is one database user's state. The atomics are touched by relays; the rest is guarded by
// Ledger.mu except sessions, guarded by smu.
type account struct {
	hash     trojan.Hash
	name     string
	down, up atomic.Int64 // counted by relays, not yet harvested
	allowed  atomic.Bool
	conns    atomic.Int64 // connections begun since start

	present          bool
	quota            int64
	dbUsed           int64 // download + upload at the last refresh
	harvested        int64 // total harvested by this process
	flushed          int64 // total confirmed in the database by this process
	flushedAtRefresh int64 // flushed when the last refresh read the table
	totDown, totUp   int64 // harvested by this process, per direction (metrics)

	smu      sync.Mutex
	sessions map[*Session]struct{}
}

// used is the account's usage as best known: the database's figure plus what this process counted
// that the database did not show at the last refresh. Caller holds Ledger.mu.
func (a *account) used() int64 {
	return a.dbUsed + a.harvested - a.flushedAtRefresh + a.down.Load() + a.up.Load()
}

// Session is one connection of a user, registered with Begin. Its counters are shared by the user's
// connections; a relay adds to them as bytes move.
type Session struct {
	acct    *account
	cut     func()
	cutOnce sync.Once
}

// Up is the counter of bytes from the client, or nil for a user that is not counted.
func (s *Session) Up() *atomic.Int64 {
	if s == nil || s.acct == nil {
		return nil
	}
	return &s.acct.up
}

// Down is the counter of bytes sent to the client, or nil for a user that is not counted.
func (s *Session) Down() *atomic.Int64 {
	if s == nil || s.acct == nil {
		return nil
	}
	return &s.acct.down
}

// End unregisters the session; call it when the connection has ended.
func (s *Session) End() {
	if s == nil || s.acct == nil {
		return
	}
	s.acct.smu.Lock()
	delete(s.acct.sessions, s)
	s.acct.smu.Unlock()
}

func (s *Session) doCut() { s.cutOnce.Do(s.cut) }

// NewLedger reads the journal (if any), tries a first read of the users table, and starts the
// goroutines that refresh, count and flush; Close stops them. A database that cannot be reached at
// start is not fatal: the Ledger starts with the config's passwords only and keeps trying.
func NewLedger(opts LedgerOptions) (*Ledger, error) {
	if opts.Backend == nil {
		return nil, errors.New("users: Ledger needs a Backend")
	}
	for _, d := range []*time.Duration{&opts.Refresh, &opts.Flush, &opts.OpTimeout} {
		if *d < 0 {
			return nil, fmt.Errorf("users: negative interval %v", *d)
		}
	}
	setDefault(&opts.Refresh, DefaultRefresh)
	setDefault(&opts.Flush, DefaultFlush)
	setDefault(&opts.OpTimeout, DefaultOpTimeout)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Ledger{
		opts:     opts,
		log:      opts.Logger,
		accts:    make(map[trojan.Hash]*account),
		pending:  make(map[trojan.Hash]*Delta),
		stop:     make(chan struct{}),
		flushNow: make(chan struct{}, 1),
	}
	empty := map[trojan.Hash]*account{}
	l.snap.Store(&empty)
	if opts.Journal != "" {
		j, err := readJournal(opts.Journal)
		if err != nil {
			return nil, err
		}
		l.restore(j)
	}
	l.refresh()
	l.wg.Add(2)
	go l.countLoop()
	go l.dbLoop()
	return l, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// restore takes over what a previous process left in the journal. Its counts count towards quotas.
func (l *Ledger) restore(j journal) {
	var n int64
	if j.Inflight != nil && len(j.Inflight.Deltas) > 0 {
		l.inflight = j.Inflight
		for _, d := range j.Inflight.Deltas {
			l.account(d.Hash).harvested += d.Download + d.Upload
			n += d.Download + d.Upload
		}
	}
	for _, d := range j.Pending {
		l.addPending(d.Hash, d.Download, d.Upload)
		l.account(d.Hash).harvested += d.Download + d.Upload
		n += d.Download + d.Upload
	}
	l.pendingBytes.Store(n)
	if n > 0 {
		l.log.Info("users: counts from the journal will be written to the database", "journal", l.opts.Journal, "bytes", n)
	}
}

// account returns the account for h, creating it. Caller holds mu (or is the constructor).
func (l *Ledger) account(h trojan.Hash) *account {
	a := l.accts[h]
	if a == nil {
		a = &account{hash: h, name: label(h), sessions: make(map[*Session]struct{})}
		l.accts[h] = a
	}
	return a
}

// label names a database user in logs without revealing any part of its hash, which is what a
// client sends to authenticate.
func label(h trojan.Hash) string {
	sum := sha256.Sum256(h[:])
	return "user-" + hex.EncodeToString(sum[:4])
}

func (l *Ledger) addPending(h trojan.Hash, down, up int64) {
	d := l.pending[h]
	if d == nil {
		d = &Delta{Hash: h}
		l.pending[h] = d
	}
	d.Download += down
	d.Upload += up
}

// Lookup answers from memory: the config's passwords, then the last snapshot of the table. A user
// over quota or deleted is not found. Both maps are always consulted, so the time taken does not
// depend on which one (if any) knows h.
func (l *Ledger) Lookup(h trojan.Hash) (User, bool) {
	var su User
	var sok bool
	if l.opts.Static != nil {
		su, sok = l.opts.Static.Lookup(h)
	}
	a, ok := (*l.snap.Load())[h]
	if sok {
		return su, true
	}
	if !ok || !a.allowed.Load() {
		return User{}, false
	}
	return User{Hash: h, Name: a.name, acct: a}, true
}

// Begin registers a connection of u (see Accountant).
func (l *Ledger) Begin(u User, cut func()) (*Session, bool) {
	a := u.acct
	if a == nil {
		return &Session{}, true // a config password: not counted, never cut
	}
	s := &Session{acct: a, cut: cut}
	a.smu.Lock()
	defer a.smu.Unlock()
	if !a.allowed.Load() {
		return nil, false
	}
	a.sessions[s] = struct{}{}
	a.conns.Add(1)
	return s, true
}

// UserTotal is what one database user did through this process since it started.
type UserTotal struct {
	Name        string // as in User.Name: never the password or its hash
	Down, Up    int64  // bytes to and from the client
	Conns       int64  // connections begun
	ActiveConns int    // connections open now
}

// Totals lists the users that connected through this process, for per-user metrics.
func (l *Ledger) Totals() []UserTotal {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []UserTotal
	for _, a := range l.accts {
		n := a.conns.Load()
		if n == 0 {
			continue
		}
		a.smu.Lock()
		active := len(a.sessions)
		a.smu.Unlock()
		out = append(out, UserTotal{Name: a.name, Down: a.totDown + a.down.Load(), Up: a.totUp + a.up.Load(), Conns: n, ActiveConns: active})
	}
	return out
}

// Stats returns the Ledger's health figures.
func (l *Ledger) Stats() LedgerStats {
	st := LedgerStats{
		Users:         len(*l.snap.Load()),
		PendingBytes:  l.pendingBytes.Load(),
		RefreshErrors: l.refreshErrs.Load(),
		FlushErrors:   l.flushErrs.Load(),
	}
	if n := l.lastRefresh.Load(); n != 0 {
		st.LastRefresh = time.Unix(0, n)
	}
	if n := l.lastFlush.Load(); n != 0 {
		st.LastFlush = time.Unix(0, n)
	}
	return st
}

// countLoop collects counts from the relays, enforces quotas and keeps the journal current.
func (l *Ledger) countLoop() {
	defer l.wg.Done()
	t := time.NewTicker(Tick)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		l.harvest()
		cuts := l.enforce()
		l.writeJournal()
		l.mu.Unlock()
		runCuts(cuts)
	}
}

// overQuota is enforce's log reason for a user present in the table who lost access.
const overQuota = "over quota"

// harvest moves the relays' counts into pending. Caller holds mu.
func (l *Ledger) harvest() {
	var n int64
	for h, a := range l.accts {
		down, up := a.down.Swap(0), a.up.Swap(0)
		if down == 0 && up == 0 {
			if !a.present && down == 0 && up == 0 && l.pending[h] == nil && l.idle(a) {
				delete(l.accts, h) // a deleted user with nothing left to write
			}
			continue
		}
		l.addPending(h, down, up)
		a.harvested += down + up
		a.totDown += down
		a.totUp += up
		n += down + up
	}
	if n > 0 {
		l.pendingBytes.Add(n)
		l.dirty = true
	}
}

// idle reports whether a has no open session and is not part of the batch being written.
func (l *Ledger) idle(a *account) bool {
	a.smu.Lock()
	n := len(a.sessions)
	a.smu.Unlock()
	if n > 0 {
		return false
	}
	if l.inflight != nil {
		for _, d := range l.inflight.Deltas {
			if d.Hash == a.hash {
				return false
			}
		}
	}
	return true
}

// enforce updates every account's access and returns the sessions of those who lost it. Caller holds mu.
func (l *Ledger) enforce() []*Session {
	var cuts []*Session
	for _, a := range l.accts {
		ok := a.present && (a.quota < 0 || a.used() < a.quota)
		if ok == a.allowed.Load() {
			continue
		}
		a.smu.Lock()
		a.allowed.Store(ok)
		n := len(a.sessions)
		if !ok {
			for s := range a.sessions {
				cuts = append(cuts, s)
				delete(a.sessions, s)
			}
		}
		a.smu.Unlock()
		if !ok {
			reason := "removed from the users table"
			if a.present {
				reason = overQuota
				l.quotaCrossed() // the other servers of a farm learn it at their next refresh
			}
			l.log.Info("users: access withdrawn, closing its connections", "user", a.name, "reason", reason, "connections", n)
		}
	}
	return cuts
}

func runCuts(cuts []*Session) {
	for _, s := range cuts {
		s.doCut()
	}
}

// dbLoop refreshes the snapshot and flushes counts, one database call at a time: a refresh then sees
// exactly the flushes this process completed before it.
func (l *Ledger) dbLoop() {
	defer l.wg.Done()
	refresh := time.NewTicker(l.opts.Refresh)
	defer refresh.Stop()
	flush := time.NewTicker(l.opts.Flush)
	defer flush.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-refresh.C:
			l.refresh()
		case <-flush.C:
			_ = l.flushOnce()
		case <-l.flushNow:
			l.flushAll()
		}
	}
}

// refresh reads the users table and replaces the snapshot.
func (l *Ledger) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.OpTimeout)
	recs, err := l.opts.Backend.Users(ctx)
	cancel()
	if err != nil {
		l.refreshErrs.Add(1)
		if !l.refreshFailing {
			l.log.Error("users: cannot read the users table; keeping the last snapshot and retrying", "err", err, "every", l.opts.Refresh)
		}
		l.refreshFailing = true
		return
	}
	if l.refreshFailing {
		l.log.Info("users: users table readable again", "users", len(recs))
	}
	l.refreshFailing = false

	l.mu.Lock()
	snap := make(map[trojan.Hash]*account, len(recs))
	for _, a := range l.accts {
		a.present = false
	}
	for _, r := range recs {
		if _, dup := snap[r.Hash]; dup {
			continue // the first row wins
		}
		a := l.account(r.Hash)
		a.present, a.quota, a.dbUsed = true, r.Quota, r.Download+r.Upload
		a.flushedAtRefresh = a.flushed
		snap[r.Hash] = a
	}
	cuts := l.enforce()
	l.snap.Store(&snap)
	l.mu.Unlock()
	l.lastRefresh.Store(time.Now().UnixNano())
	runCuts(cuts)
}

// flushOnce writes the batch in flight, or a new one from pending, to the database. It returns nil
// when nothing is left to write.
func (l *Ledger) flushOnce() error {
	l.mu.Lock()
	l.harvest()
	if l.inflight == nil && len(l.pending) > 0 {
		b := &Batch{ID: newBatchID(), Deltas: make([]Delta, 0, len(l.pending))}
		for _, d := range l.pending {
			b.Deltas = append(b.Deltas, *d)
		}
		l.inflight = b
		l.pending = make(map[trojan.Hash]*Delta)
		l.dirty = true
	}
	l.writeJournal() // before the write whose outcome may be unknown
	b := l.inflight
	l.mu.Unlock()
	if b == nil {
		return nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), l.opts.OpTimeout)
	err := l.opts.Backend.Apply(ctx, *b)
	cancel()
	if err != nil {
		l.flushErrs.Add(1)
		if !l.flushFail {
			l.log.Error("users: cannot write counts to the database; keeping them and retrying",
				"err", err, "every", l.opts.Flush, "pending_bytes", l.pendingBytes.Load())
		}
		l.flushFail = true
		return fmt.Errorf("write batch %s: %w", b.ID, err)
	}
	if l.flushFail {
		l.log.Info("users: counts written to the database again")
	}
	l.flushFail = false

	var n int64
	l.mu.Lock()
	for _, d := range b.Deltas {
		l.account(d.Hash).flushed += d.Download + d.Upload
		n += d.Download + d.Upload
	}
	l.inflight = nil
	l.dirty = true
	l.writeJournal()
	pendingLeft := len(l.pending) > 0
	l.mu.Unlock()
	l.pendingBytes.Add(-n)
	l.lastFlush.Store(time.Now().UnixNano())
	if pendingLeft {
		return errMore
	}
	return nil
}

var errMore = errors.New("more counts to write")

func newBatchID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Close stops the Ledger and writes every count to the database, retrying until ctx ends. Counts it
// could not write stay in the journal (if any) for the next start; without one they are lost, and
// Close says how many bytes. Call it after the server has stopped. It is idempotent.
func (l *Ledger) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		close(l.stop)
		l.wg.Wait()
		retry := time.NewTicker(time.Second)
		defer retry.Stop()
		for {
			err := l.flushOnce()
			if err == nil {
				break
			}
			if errors.Is(err, errMore) {
				continue
			}
			select {
			case <-ctx.Done():
				l.mu.Lock()
				l.writeJournal()
				l.mu.Unlock()
				left := l.pendingBytes.Load()
				if l.opts.Journal != "" {
					l.closeErr = fmt.Errorf("users: %d bytes not written to the database, kept in %s: %w", left, l.opts.Journal, err)
				} else {
					l.closeErr = fmt.Errorf("users: %d bytes not written to the database and lost (no journal): %w", left, err)
				}
				_ = l.opts.Backend.Close()
				return
			case <-retry.C:
			}
		}
		l.closeErr = l.opts.Backend.Close()
	})
	return l.closeErr
}
