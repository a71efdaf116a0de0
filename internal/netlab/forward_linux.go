package netlab

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// maxPacket is the largest packet a reader accepts (the TUN MTU bounds what
// it is given; anything above the link MTU is counted as a queue drop).
const maxPacket = 65535

// spinWindow is how long before a packet is due the releaser stops sleeping
// and waits on the CPU instead, so release times do not carry the timer's
// wake-up latency.
const spinWindow = int64(200 * time.Microsecond)

// forwarder moves packets between side A and the B sides of a link. Each
// input has a reader goroutine that applies faults and loss and either
// writes the packet on at once (no delay, jitter or rate limit configured)
// or queues it; each direction has a releaser goroutine that writes queued
// packets when they are due. A timerfd on the netpoller wakes the releaser,
// which keeps release times within tens of microseconds (Go timers
// round sub-millisecond waits up to a millisecond).
type forwarder struct {
	epoch  time.Time
	faults *faultSet
	steer  *steering
	a      *os.File
	bs     []*os.File
	pipes  [2]*pipe // 0: A→B, 1: B→A

	done     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// packet is one queued packet; buffers are recycled through pipe.free.
type packet struct {
	buf []byte // len = MTU
	n   int
	due int64 // ns since forwarder.epoch
	seq uint64
	out int
}

// pipe is one direction: a time-ordered queue of packets and its releaser.
type pipe struct {
	f    *forwarder
	d    *Direction
	outs []*os.File
	mtu  int

	queued atomic.Int64 // packets in heap or being written by the releaser

	mu        sync.Mutex
	heap      []*packet // min-heap by (due, seq)
	free      []*packet
	allocated int
	limit     int
	seq       uint64
	lastDue   int64 // latest due time handed out (order keeping)
	txFree    int64 // when the rate limiter's "wire" is free again

	notify  chan struct{} // releaser: the queue went from empty to not empty
	timerFD int           // releaser: wakes it when the head is due
	timer   *os.File
	tbuf    [8]byte
}

// newForwarder starts forwarding between a and bs. It owns the files and
// closes them in stop.
func newForwarder(a *os.File, bs []*os.File, mtu, queueLen int, seed uint64, faults *faultSet, steer *steering, atob, btoa *Direction) (*forwarder, error) {
	f := &forwarder{epoch: time.Now(), faults: faults, steer: steer, a: a, bs: bs, done: make(chan struct{})}
	var err error
	if f.pipes[0], err = f.newPipe(atob, bs, mtu, queueLen); err != nil {
		return nil, err
	}
	if f.pipes[1], err = f.newPipe(btoa, []*os.File{a}, mtu, queueLen); err != nil {
		f.pipes[0].timer.Close()
		return nil, err
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	f.wg.Add(2 + 1 + len(bs))
	go f.pipes[0].releaseLoop()
	go f.pipes[1].releaseLoop()
	go f.readLoop(a, f.pipes[0], true, seed)
	for i, b := range bs {
		go f.readLoop(b, f.pipes[1], false, seed+uint64(i)+1)
	}
	return f, nil
}

func (f *forwarder) newPipe(d *Direction, outs []*os.File, mtu, queueLen int) (*pipe, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netlab: timerfd_create: %w", err)
	}
	return &pipe{
		f: f, d: d, outs: outs, mtu: mtu, limit: queueLen,
		heap:    make([]*packet, 0, queueLen),
		free:    make([]*packet, 0, queueLen),
		notify:  make(chan struct{}, 1),
		timerFD: fd,
		timer:   os.NewFile(uintptr(fd), "netlab-timerfd"),
	}, nil
}

// now returns monotonic nanoseconds since the forwarder started.
func (f *forwarder) now() int64 { return int64(time.Since(f.epoch)) }

func (f *forwarder) stopped() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// stop ends all goroutines and closes the files; safe to call more than once.
func (f *forwarder) stop() error {
	var errs []error
	f.stopOnce.Do(func() {
		close(f.done)
		// Closing the files unblocks the readers; writes fail from now on.
		if err := f.a.Close(); err != nil {
			errs = append(errs, err)
		}
		for _, b := range f.bs {
			if err := b.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		// Wake releasers that wait for a due time; they see done and return.
		for _, p := range f.pipes {
			p.mu.Lock()
			p.arm(1)
			p.mu.Unlock()
		}
		f.wg.Wait()
		for _, p := range f.pipes {
			if err := p.timer.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}

// readLoop reads packets from in and hands them to p until in is closed.
// steer is set for side A's reader, which picks the B host per flow.
func (f *forwarder) readLoop(in *os.File, p *pipe, steer bool, seed uint64) {
	defer f.wg.Done()
	buf := make([]byte, maxPacket)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for {
		n, err := in.Read(buf)
		if err != nil {
			if f.stopped() || errors.Is(err, os.ErrClosed) {
				return
			}
			slog.Warn("netlab: read failed, forwarder stops", "file", in.Name(), "err", err)
			return
		}
		p.handle(buf[:n], rng, steer)
	}
}

// handle applies faults, loss and shaping to one packet read from a TUN.
func (p *pipe) handle(pkt []byte, rng *rand.Rand, steer bool) {
	d, faults := p.d, p.f.faults
	if faults.blackhole.Load() {
		d.blackholed.Add(1)
		return
	}
	pi, ok := parsePacket(pkt)
	if !ok {
		d.malformed.Add(1)
	} else {
		if pi.isSYNWithData() {
			if faults.dropSYNData.Load() {
				d.synDataDrop.Add(1)
				return
			}
			d.countSYNData(pi.payloadLen)
		}
		if pi.isTCP && pi.tcpFlags&tcpFlagSYN == 0 && faults.dropNonSYN.Load() {
			d.nonSYNDrop.Add(1)
			return
		}
		if faults.stripTFO.Load() && stripTFO(pkt, &pi) {
			d.tfoStripped.Add(1)
		}
	}
	if fn := d.dropFn.Load(); fn != nil && (*fn)(pkt) {
		d.lost.Add(1)
		return
	}
	if loss := math.Float64frombits(d.loss.Load()); loss > 0 && rng.Float64() < loss {
		d.lost.Add(1)
		return
	}
	out := 0
	if steer {
		out = p.f.steer.choose(&pi, ok)
	}
	delay, jitter, rate := d.delay.Load(), d.jitter.Load(), d.rate.Load()
	if delay == 0 && jitter == 0 && rate == 0 && p.queued.Load() == 0 {
		p.write(out, pkt)
		return
	}
	p.enqueue(pkt, out, rng, delay, jitter, rate)
}

func (p *pipe) write(out int, pkt []byte) {
	// Counted before the write: the receiver may read the packet before
	// this goroutine runs again, and whoever saw it arrive must find it
	// counted.
	p.d.forwarded.Add(1)
	if _, err := p.outs[out].Write(pkt); err != nil {
		// The kernel refuses malformed packets (EINVAL); a closed file
		// means the link is going away. Either way the packet is gone.
		p.d.forwarded.Add(^uint64(0)) // minus one
	}
}

func (p *pipe) enqueue(pkt []byte, out int, rng *rand.Rand, delay, jitter, rate int64) {
	now := p.f.now()
	p.mu.Lock()
	if len(pkt) > p.mtu || (len(p.free) == 0 && p.allocated == p.limit) {
		p.mu.Unlock()
		p.d.queueDrops.Add(1)
		return
	}
	var pk *packet
	if n := len(p.free); n > 0 {
		pk = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		pk = &packet{buf: make([]byte, p.mtu)}
		p.allocated++
	}
	pk.n = copy(pk.buf, pkt)
	pk.out = out

	t := now
	if rate > 0 {
		t = max(t, p.txFree) + int64(len(pkt))*8*int64(time.Second)/rate
		p.txFree = t
	}
	due := t + delay
	if jitter > 0 {
		due += int64(rng.Uint64N(uint64(2*jitter+1))) - jitter
		due = max(due, t)
	}
	if !p.d.reorder.Load() {
		due = max(due, p.lastDue)
	}
	p.lastDue = max(p.lastDue, due)
	pk.due, pk.seq = due, p.seq
	p.seq++
	p.push(pk)
	p.queued.Add(1)
	if p.heap[0] == pk {
		if len(p.heap) == 1 {
			select { // the releaser waits on notify
			case p.notify <- struct{}{}:
			default:
			}
		} else {
			p.arm(due - now) // the releaser waits for a later head
		}
	}
	p.mu.Unlock()
}

// releaseLoop writes queued packets when they are due.
func (p *pipe) releaseLoop() {
	defer p.f.wg.Done()
	for {
		if p.f.stopped() {
			return
		}
		p.mu.Lock()
		if len(p.heap) == 0 {
			p.mu.Unlock()
			select {
			case <-p.notify:
			case <-p.f.done:
				return
			}
			continue
		}
		head := p.heap[0]
		if wait := head.due - p.f.now(); wait > spinWindow {
			p.arm(wait - spinWindow)
			p.mu.Unlock()
			if _, err := p.timer.Read(p.tbuf[:]); err != nil && !errors.Is(err, os.ErrClosed) {
				slog.Warn("netlab: timerfd read", "err", err)
			}
			continue
		} else if wait > 0 {
			// Waking from a timer costs 50-100 µs on a VM, more at
			// times; the last stretch is cheaper to wait out on the CPU,
			// yielding to any goroutine that has work.
			p.mu.Unlock()
			for p.f.now() < head.due && !p.f.stopped() {
				runtime.Gosched()
			}
			continue
		}
		p.pop()
		p.mu.Unlock()

		p.write(head.out, head.buf[:head.n])

		p.mu.Lock()
		p.free = append(p.free, head)
		p.queued.Add(-1)
		p.mu.Unlock()
	}
}

// arm sets the releaser's timer to fire in ns nanoseconds. p.mu is held.
func (p *pipe) arm(ns int64) {
	ns = max(ns, 1)
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(ns)}
	if err := unix.TimerfdSettime(p.timerFD, 0, &spec, nil); err != nil {
		slog.Warn("netlab: timerfd_settime", "err", err)
	}
}

func (p *pipe) less(i, j int) bool {
	a, b := p.heap[i], p.heap[j]
	return a.due < b.due || (a.due == b.due && a.seq < b.seq)
}

func (p *pipe) push(pk *packet) {
	p.heap = append(p.heap, pk)
	i := len(p.heap) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !p.less(i, parent) {
			break
		}
		p.heap[i], p.heap[parent] = p.heap[parent], p.heap[i]
		i = parent
	}
}

func (p *pipe) pop() *packet {
	h := p.heap
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = nil
	p.heap = h[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= last {
			break
		}
		m := l
		if r := l + 1; r < last && p.less(r, l) {
			m = r
		}
		if !p.less(m, i) {
			break
		}
		p.heap[i], p.heap[m] = p.heap[m], p.heap[i]
		i = m
	}
	return top
}
