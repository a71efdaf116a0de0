package memtrim

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const mb = 1 << 20

// fakeHeap is a scripted heap: the test sets what the runtime's metrics say, and a trim does what
// debug.FreeOSMemory does to them (garbage collected, free pages released).
type fakeHeap struct {
	mu    sync.Mutex
	h     heap
	busy  uint64 // added to allocs at every read: a process that keeps allocating
	trims atomic.Int32
}

func (f *fakeHeap) read() heap {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.h.allocs += f.busy
	return f.h
}

func (f *fakeHeap) trim() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.h.released += f.h.reclaimable()
	f.h.objects, f.h.free = f.h.live, 0
	f.trims.Add(1)
}

// set changes the heap (garbage and free pages on top of live) and the allocation rate.
func (f *fakeHeap) set(live, garbage, free, busy uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.h.live, f.h.objects, f.h.free, f.busy = live, live+garbage, free, busy
}

// run starts a Trimmer on f with a 5 ms interval and the given spacing until the test ends.
func (f *fakeHeap) run(t *testing.T, spacing time.Duration) {
	t.Helper()
	tr := New(Options{Interval: 5 * time.Millisecond, MinSpacing: spacing, read: f.read, trim: f.trim})
	go tr.Run()
	t.Cleanup(func() {
		if err := tr.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// A burst leaves garbage and free pages; once the process is quiet they are given back, once.
func TestTrimsOnceWhenQuietAfterBurst(t *testing.T) {
	var f fakeHeap
	f.set(20*mb, 25*mb, 15*mb, 0)
	f.run(t, time.Millisecond)
	if !waitFor(2*time.Second, func() bool { return f.trims.Load() > 0 }) {
		t.Fatal("no trim of a quiet process with 40 MiB to give back")
	}
	time.Sleep(100 * time.Millisecond) // 20 more intervals, quiet, spacing long past
	if n := f.trims.Load(); n != 1 {
		t.Errorf("%d trims after one burst, want 1: nothing was left to give back after the first", n)
	}
	if got := f.read().released; got != 40*mb {
		t.Errorf("released %d MiB, want 40", got/mb)
	}
}

// A process that keeps allocating is busy, however much it could give back: the collector's own
// pacing is right then. Once the allocations stop, the trim follows.
func TestNoTrimWhileBusy(t *testing.T) {
	var f fakeHeap
	f.set(20*mb, 40*mb, 10*mb, 2*mb) // 2 MiB per interval
	f.run(t, time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	if n := f.trims.Load(); n != 0 {
		t.Errorf("%d trims while the process allocated 2 MiB per interval, want 0", n)
	}
	f.set(20*mb, 40*mb, 10*mb, DefaultQuietAlloc/2) // quiet: a metrics scrape now and then
	if !waitFor(2*time.Second, func() bool { return f.trims.Load() > 0 }) {
		t.Errorf("no trim after the allocations stopped")
	}
}

// A quiet process with little to give back is left alone: a collection would cost more than it frees.
func TestNoTrimWhenLittleToReclaim(t *testing.T) {
	var f fakeHeap
	f.set(50*mb, 2*mb, DefaultMinReclaim-2*mb-1, 0)
	f.run(t, time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	if n := f.trims.Load(); n != 0 {
		t.Errorf("%d trims with less than %d MiB to give back, want 0", n, DefaultMinReclaim/mb)
	}
}

// Bursts in quick succession (a browser loading page after page) are trimmed at most once per
// MinSpacing.
func TestTrimSpacing(t *testing.T) {
	var f fakeHeap
	f.set(20*mb, 30*mb, 0, 0)
	f.run(t, 300*time.Millisecond)
	if !waitFor(2*time.Second, func() bool { return f.trims.Load() == 1 }) {
		t.Fatal("no first trim")
	}
	f.set(20*mb, 30*mb, 0, 0) // the next burst, already over
	time.Sleep(100 * time.Millisecond)
	if n := f.trims.Load(); n != 1 {
		t.Fatalf("%d trims within 100 ms, want 1 (spacing 300 ms)", n)
	}
	if !waitFor(2*time.Second, func() bool { return f.trims.Load() == 2 }) {
		t.Errorf("no second trim once the spacing had passed")
	}
}

// sink keeps allocations from being optimised away.
var sink [][]byte

// With the runtime's real metrics and debug.FreeOSMemory: 64 MiB of garbage left by a burst goes
// back to the system once the process is quiet.
func TestTrimGivesMemoryBack(t *testing.T) {
	runtime.GC()
	debug.FreeOSMemory()
	before := newSampler().read()
	// The burst's garbage, made without a collection in between so that it is all still there.
	old := debug.SetGCPercent(-1)
	for range 64 * 64 {
		sink = append(sink, make([]byte, 16<<10))
	}
	sink = nil
	debug.SetGCPercent(old)
	var trims atomic.Int32
	tr := New(Options{Interval: 20 * time.Millisecond, trim: func() { trims.Add(1); debug.FreeOSMemory() }})
	go tr.Run()
	defer tr.Stop(context.Background())
	if !waitFor(3*time.Second, func() bool { return trims.Load() > 0 }) {
		t.Fatalf("no trim within 3s of a 64 MiB burst (reclaimable now %.1f MiB)", mib(newSampler().read().reclaimable()))
	}
	after := newSampler().read()
	if got := after.released - before.released; got < 32*mb {
		t.Errorf("%.1f MiB returned to the system after a 64 MiB burst, want at least 32", mib(got))
	}
	if after.objects > before.objects+16*mb {
		t.Errorf("heap objects %.1f MiB after the trim, %.1f before the burst: the garbage was not collected", mib(after.objects), mib(before.objects))
	}
}

// Stop ends Run promptly and may be called twice.
func TestStop(t *testing.T) {
	tr := New(Options{Interval: time.Hour})
	ran := make(chan error, 1)
	go func() { ran <- tr.Run() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := tr.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tr.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-ran; err != nil {
		t.Errorf("Run returned %v after Stop, want nil", err)
	}
}
