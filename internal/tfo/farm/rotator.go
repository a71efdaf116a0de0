package farm

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Clock is the Rotator's time source; tests inject one to drive time through a rotation.
type Clock interface {
	Now() time.Time
	// At returns a channel that receives once the clock has reached t (at once if it has already).
	At(t time.Time) <-chan time.Time
}

// SystemClock is the wall clock.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) At(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }

// maxWait bounds how long the Rotator sleeps between looks at the clock, so that a wall clock that is
// stepped (NTP, a resumed VM) is noticed within a minute rather than at the next planned change.
const maxWait = time.Minute

// RotatorOptions configures a Rotator; the zero value is usable.
type RotatorOptions struct {
	Clock  Clock        // SystemClock if nil
	Logger *slog.Logger // slog.Default() if nil; it never receives a key or the secret
}

// Rotator keeps the TFO keys of a set of listeners right as time passes: it sets them at once, again
// at each change of the schedule (Farm.NextChange), and whenever SetFarm gives it a new secret. Its
// goroutine runs until Close. It does not own the listeners.
type Rotator struct {
	clock Clock
	log   *slog.Logger
	lns   []syscall.Conn
	set   func(syscall.Conn, KeySet) error // SetKeys; tests replace it

	mu   sync.Mutex // serialises applying keys; guards farm, cur, have
	farm *Farm
	cur  KeySet
	have bool

	epoch     atomic.Int64
	wake      chan struct{}
	done      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

// NewRotator sets f's current keys on every listener in lns and starts keeping them current. It fails,
// starting nothing, if the keys cannot be set (for example errors.ErrUnsupported off Linux).
func NewRotator(f *Farm, lns []syscall.Conn, opts RotatorOptions) (*Rotator, error) {
	return newRotator(f, lns, opts, SetKeys)
}

func newRotator(f *Farm, lns []syscall.Conn, opts RotatorOptions, set func(syscall.Conn, KeySet) error) (*Rotator, error) {
	if f == nil {
		return nil, errors.New("farm rotator: no farm")
	}
	r := &Rotator{
		clock:   opts.Clock,
		log:     opts.Logger,
		lns:     append([]syscall.Conn(nil), lns...),
		set:     set,
		farm:    f,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if r.clock == nil {
		r.clock = SystemClock
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if err := r.apply(true); err != nil {
		return nil, err
	}
	go r.run()
	return r, nil
}

// SetFarm switches to another farm (a new secret or schedule, on SIGHUP) and sets its keys at once.
// On error the listeners may hold a mix of old and new keys until the next attempt, a minute later
// at most; established connections are never affected.
func (r *Rotator) SetFarm(f *Farm) error {
	if f == nil {
		return errors.New("farm rotator: no farm")
	}
	r.mu.Lock()
	r.farm = f
	r.mu.Unlock()
	err := r.apply(true)
	select {
	case r.wake <- struct{}{}: // the loop recomputes its next change from the new schedule
	default:
	}
	return err
}

// Current is the key set last applied to every listener.
func (r *Rotator) Current() KeySet {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// Epoch is the epoch of the primary key the listeners hold (a metrics gauge).
func (r *Rotator) Epoch() int64 { return r.epoch.Load() }

// Close stops the goroutine and waits for it. The listeners keep their last keys. Close is idempotent.
func (r *Rotator) Close() error {
	r.closeOnce.Do(func() { close(r.done) })
	<-r.stopped
	return nil
}

func (r *Rotator) run() {
	defer close(r.stopped)
	for {
		now := r.clock.Now()
		r.mu.Lock()
		next := r.farm.NextChange(now)
		r.mu.Unlock()
		if limit := now.Add(maxWait); next.After(limit) {
			next = limit
		}
		select {
		case <-r.done:
			return
		case <-r.wake:
		case <-r.clock.At(next):
		}
		if err := r.apply(false); err != nil {
			r.log.Error("TFO farm keys not set; retrying within a minute", "err", err)
		}
	}
}

// apply sets the keys for the clock's current time on every listener, unless they are set already
// and force is false.
func (r *Rotator) apply(force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	ks := r.farm.KeysAt(now)
	if r.have && !force && ks == r.cur {
		return nil
	}
	var errs []error
	for i, ln := range r.lns {
		if err := r.set(ln, ks); err != nil {
			errs = append(errs, fmt.Errorf("listener %d: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		r.have = false // try again at the next wake-up
		return err
	}
	r.cur, r.have = ks, true
	r.epoch.Store(ks.Epoch)
	r.log.Info("TFO farm keys set",
		"epoch", ks.Epoch, "primary", ks.Primary.Fingerprint(),
		"backup_epoch", ks.BackupEpoch, "backup", ks.Backup.Fingerprint(),
		"next_change", r.farm.NextChange(now).UTC().Format(time.RFC3339),
		"listeners", len(r.lns))
	return nil
}
