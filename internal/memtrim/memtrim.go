// Package memtrim gives a process's unused heap back to the operating system once the process goes
// quiet after a burst.
//
// A burst of new tunnels (a page load, a farm's clients reconnecting) allocates far more than the
// tunnels keep: TLS handshakes, key shares, buffers. The Go runtime collects that garbage when the
// heap reaches twice what survived the last collection (GOGC=100) and returns freed pages to the
// system only slowly and only above that goal, so a proxy holding 2000 idle tunnels stays at about
// twice their live heap in resident memory for as long as they stay idle. The Trimmer watches the
// runtime's own metrics; when the process has allocated next to nothing for a while and enough is
// there to reclaim, it runs debug.FreeOSMemory once: one collection, then the free pages go back.
// While the process is busy it does nothing (the collector's pacing is right then), and a small
// process is left alone.
package memtrim

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Defaults, chosen on a 2-core VM (docs/performance.md, "Idle tunnels"): an idle client or server
// allocates well under 100 KiB a second (a metrics scrape included); a process opening even ten
// tunnels a second allocates over 1 MiB. A trim of a 60 MiB heap takes 5-15 ms of CPU.
const (
	DefaultInterval   = time.Second
	DefaultQuietAlloc = 1 << 20 // bytes allocated in one Interval below which the process is quiet
	DefaultMinReclaim = 4 << 20 // bytes a trim must be able to give back to be worth one
	DefaultMinSpacing = 10 * time.Second
)

// Options tunes a Trimmer; zero fields take the defaults above.
type Options struct {
	Interval   time.Duration // how often the runtime's metrics are read
	QuietAlloc uint64        // quiet: less than this allocated in each of the last two intervals
	MinReclaim uint64        // garbage plus retained free heap needed for a trim
	MinSpacing time.Duration // at least this long between two trims
	Log        *slog.Logger  // a Debug line per trim

	trim func()      // debug.FreeOSMemory; tests count calls
	read func() heap // the runtime's metrics; tests script them
}

// Trimmer is a goroutine that trims the heap when the process goes quiet; Run starts it, Stop ends it.
type Trimmer struct {
	opt  Options
	stop chan struct{}
	once sync.Once
	done chan struct{}
}

// New returns a Trimmer with opt's settings.
func New(opt Options) *Trimmer {
	if opt.Interval <= 0 {
		opt.Interval = DefaultInterval
	}
	if opt.QuietAlloc == 0 {
		opt.QuietAlloc = DefaultQuietAlloc
	}
	if opt.MinReclaim == 0 {
		opt.MinReclaim = DefaultMinReclaim
	}
	if opt.MinSpacing <= 0 {
		opt.MinSpacing = DefaultMinSpacing
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.trim == nil {
		opt.trim = debug.FreeOSMemory
	}
	if opt.read == nil {
		opt.read = newSampler().read
	}
	return &Trimmer{opt: opt, stop: make(chan struct{}), done: make(chan struct{})}
}

// Run watches the heap until Stop; it returns nil.
func (t *Trimmer) Run() error {
	defer close(t.done)
	tick := time.NewTicker(t.opt.Interval)
	defer tick.Stop()
	read := t.opt.read
	prevAlloc := read().allocs
	quiet := 0 // intervals in a row with little allocated
	var last time.Time
	for {
		select {
		case <-t.stop:
			return nil
		case now := <-tick.C:
			h := read()
			if h.allocs-prevAlloc < t.opt.QuietAlloc {
				quiet++
			} else {
				quiet = 0
			}
			prevAlloc = h.allocs
			if quiet < 2 || h.reclaimable() < t.opt.MinReclaim || (!last.IsZero() && now.Sub(last) < t.opt.MinSpacing) {
				continue
			}
			start := time.Now()
			t.opt.trim()
			last = time.Now()
			after := read()
			t.opt.Log.Debug("process quiet: unused heap returned to the system",
				"reclaimable_mib", mib(h.reclaimable()), "released_mib", mib(after.released-h.released),
				"live_mib", mib(after.live), "took", last.Sub(start).Round(time.Microsecond))
			prevAlloc = after.allocs // the trim's own allocations do not count as activity
		}
	}
}

// Stop ends Run and waits for it.
func (t *Trimmer) Stop(ctx context.Context) error {
	t.once.Do(func() { close(t.stop) })
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// heap is what the runtime's metrics say about the heap at one moment.
type heap struct {
	allocs   uint64 // bytes allocated since the process started
	objects  uint64 // bytes in heap objects, live or garbage not yet swept
	live     uint64 // bytes that survived the last collection
	free     uint64 // free heap the runtime keeps, not yet returned
	released uint64 // free heap returned to the system
}

// reclaimable is what a collection and a scavenge would give back: garbage plus retained free heap.
func (h heap) reclaimable() uint64 {
	var garbage uint64
	if h.objects > h.live {
		garbage = h.objects - h.live
	}
	return garbage + h.free
}

// sampler reads the runtime metrics a heap needs, reusing its sample slice.
type sampler struct{ samples []metrics.Sample }

func newSampler() *sampler {
	names := []string{
		"/gc/heap/allocs:bytes",
		"/memory/classes/heap/objects:bytes",
		"/gc/heap/live:bytes",
		"/memory/classes/heap/free:bytes",
		"/memory/classes/heap/released:bytes",
	}
	s := &sampler{samples: make([]metrics.Sample, len(names))}
	for i, n := range names {
		s.samples[i].Name = n
	}
	return s
}

func (s *sampler) read() heap {
	metrics.Read(s.samples)
	v := func(i int) uint64 {
		if s.samples[i].Value.Kind() != metrics.KindUint64 {
			return 0 // not in this Go version: that part of the estimate is left out
		}
		return s.samples[i].Value.Uint64()
	}
	return heap{allocs: v(0), objects: v(1), live: v(2), free: v(3), released: v(4)}
}

func mib(b uint64) float64 { return float64(b*10/(1<<20)) / 10 }
