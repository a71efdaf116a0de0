package netlab

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync/atomic"
	"time"
)

// NamePrefix starts the name of every network namespace a lab creates:
// "frlab-<pid>-<lab>-<host>". The sweeper relies on it.
const NamePrefix = "frlab-"

// DefaultMTU is the MTU of a link's TUN devices unless LinkOptions.MTU says otherwise.
const DefaultMTU = 1500

// DefaultQueueLen is how many packets one direction of a link holds in
// flight (delayed or waiting for the rate limit) before it drops (tail drop).
const DefaultQueueLen = 4096

// DefaultTCPFastOpen is the net.ipv4.tcp_fastopen value of a host whose
// HostOptions.TCPFastOpen is zero: client and server enabled (0x1|0x2).
const DefaultTCPFastOpen = 3

// FastOpenOff as HostOptions.TCPFastOpen writes 0 (TFO disabled).
const FastOpenOff = -1

// TB is the part of testing.TB the lab uses; *testing.T and *testing.B satisfy it.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

// HostOptions configures one host (network namespace).
type HostOptions struct {
	// TCPFastOpen is written to the host's net.ipv4.tcp_fastopen. Zero means
	// DefaultTCPFastOpen; FastOpenOff writes 0.
	TCPFastOpen int
}

func (o HostOptions) tfoValue() int {
	switch {
	case o.TCPFastOpen == 0:
		return DefaultTCPFastOpen
	case o.TCPFastOpen < 0:
		return 0
	}
	return o.TCPFastOpen
}

// LinkOptions configures a link. Delay, Jitter, Loss and Rate apply to each
// direction and can be changed later per direction (Link.AtoB, Link.BtoA).
type LinkOptions struct {
	Delay    time.Duration // one-way delay per direction; RTT = 2 × Delay
	Jitter   time.Duration // each packet's delay is Delay ± a uniform random Jitter
	Reorder  bool          // allow jitter to reorder packets (off: order is kept)
	Loss     float64       // probability in [0, 1] that a packet is dropped
	Rate     int64         // bits per second, 0 for unlimited
	MTU      int           // TUN MTU, DefaultMTU when zero
	QueueLen int           // packets per direction, DefaultQueueLen when zero
	Faults   Faults        // faults active from the start
	// Seed of the random loss and jitter (each reader derives its own stream from it); 0 means
	// one from the clock. With a seed, the n-th packet of a direction meets the same fate in
	// every run (which packet is n-th still depends on the TCP stacks' timing).
	Seed uint64
	// Veth joins the hosts with a veth pair instead of TUN devices and the forwarder: the kernel
	// moves packets between the namespaces as on a LAN, without a userspace hop (which costs two
	// wake-ups, 0.1-0.3 ms per packet on a 2-core VM). It takes no shaping and no faults; its
	// Directions count nothing and their setters have no effect. Not for ECMP links.
	Veth bool
}

func (o LinkOptions) withDefaults() LinkOptions {
	if o.MTU == 0 {
		o.MTU = DefaultMTU
	}
	if o.QueueLen == 0 {
		o.QueueLen = DefaultQueueLen
	}
	return o
}

func (o LinkOptions) validate() error {
	if o.Delay < 0 || o.Jitter < 0 {
		return fmt.Errorf("netlab: negative delay %v or jitter %v", o.Delay, o.Jitter)
	}
	if o.Loss < 0 || o.Loss > 1 || math.IsNaN(o.Loss) {
		return fmt.Errorf("netlab: loss %v outside [0, 1]", o.Loss)
	}
	if o.Rate < 0 {
		return fmt.Errorf("netlab: negative rate %d", o.Rate)
	}
	if o.MTU < 576 || o.MTU > 65535 {
		return fmt.Errorf("netlab: MTU %d outside [576, 65535]", o.MTU)
	}
	if o.QueueLen < 1 {
		return fmt.Errorf("netlab: queue length %d < 1", o.QueueLen)
	}
	if o.Veth && (o.Delay != 0 || o.Jitter != 0 || o.Loss != 0 || o.Rate != 0 || o.Faults != (Faults{})) {
		return errors.New("netlab: a veth link takes no delay, jitter, loss, rate or faults")
	}
	return nil
}

// Faults are middlebox behaviours a link can show. They can be switched at
// any time, also while traffic flows, and apply to both directions.
type Faults struct {
	DropSYNData bool // drop TCP SYNs (and SYN-ACKs) that carry payload, IPv4 and IPv6
	StripTFO    bool // replace the TFO option (34) in SYN and SYN-ACK with NOPs, fixing the checksum
	Blackhole   bool // drop every packet
	// DropNonSYN drops every TCP segment without SYN (handshakes' final ACKs, data, FINs): a
	// client behind it completes handshakes on its side only, so the server keeps each connection
	// half-open (in SYN_RECV, holding a TFO queue slot when its SYN carried accepted data).
	DropNonSYN bool
}

// faultSet holds Faults as atomics so forwarders read them per packet.
type faultSet struct {
	dropSYNData atomic.Bool
	stripTFO    atomic.Bool
	blackhole   atomic.Bool
	dropNonSYN  atomic.Bool
}

func (f *faultSet) set(v Faults) {
	f.dropSYNData.Store(v.DropSYNData)
	f.stripTFO.Store(v.StripTFO)
	f.blackhole.Store(v.Blackhole)
	f.dropNonSYN.Store(v.DropNonSYN)
}

func (f *faultSet) get() Faults {
	return Faults{DropSYNData: f.dropSYNData.Load(), StripTFO: f.stripTFO.Load(), Blackhole: f.blackhole.Load(), DropNonSYN: f.dropNonSYN.Load()}
}

// Direction is one direction of a link: its shaping parameters, changeable
// at any time, and its counters.
type Direction struct {
	delay   atomic.Int64 // ns
	jitter  atomic.Int64 // ns
	loss    atomic.Uint64
	rate    atomic.Int64 // bit/s
	reorder atomic.Bool
	dropFn  atomic.Pointer[func(pkt []byte) bool]

	forwarded   atomic.Uint64
	lost        atomic.Uint64
	queueDrops  atomic.Uint64
	synDataDrop atomic.Uint64
	nonSYNDrop  atomic.Uint64
	tfoStripped atomic.Uint64
	blackholed  atomic.Uint64
	malformed   atomic.Uint64

	synData      atomic.Uint64 // SYNs (and SYN-ACKs) with payload that passed the faults
	synDataBytes atomic.Uint64 // their payload bytes
	synDataMax   atomic.Uint64 // the largest payload among them
}

// countSYNData records a SYN carrying n payload bytes (what a TFO client puts in it).
func (d *Direction) countSYNData(n int) {
	d.synData.Add(1)
	d.synDataBytes.Add(uint64(n))
	for {
		cur := d.synDataMax.Load()
		if uint64(n) <= cur || d.synDataMax.CompareAndSwap(cur, uint64(n)) {
			return
		}
	}
}

func (d *Direction) apply(o LinkOptions) {
	d.SetDelay(o.Delay)
	d.SetJitter(o.Jitter)
	d.SetReorder(o.Reorder)
	d.SetLoss(o.Loss)
	d.SetRate(o.Rate)
}

// SetDelay sets the one-way delay of this direction.
func (d *Direction) SetDelay(v time.Duration) { d.delay.Store(int64(max(v, 0))) }

// SetJitter sets the jitter: each packet's delay is Delay ± uniform(Jitter).
func (d *Direction) SetJitter(v time.Duration) { d.jitter.Store(int64(max(v, 0))) }

// SetReorder allows (true) or forbids (false) jitter to reorder packets.
func (d *Direction) SetReorder(v bool) { d.reorder.Store(v) }

// SetLoss sets the probability in [0, 1] that a packet is dropped.
func (d *Direction) SetLoss(p float64) {
	if math.IsNaN(p) || p < 0 {
		p = 0
	}
	d.loss.Store(math.Float64bits(min(p, 1)))
}

// SetRate limits the direction to bitsPerSecond (0: unlimited).
func (d *Direction) SetRate(bitsPerSecond int64) { d.rate.Store(max(bitsPerSecond, 0)) }

// SetDropFunc installs fn, called for every packet of this direction (from its reader goroutine,
// one call at a time) after the faults and before the random loss: a packet it returns true for is
// dropped and counted as Lost. Tests use it for loss patterns they control, such as the same
// pseudo-random draws for the n-th packet of the n-th connection of two implementations (common
// random numbers). nil removes it.
func (d *Direction) SetDropFunc(fn func(pkt []byte) bool) {
	if fn == nil {
		d.dropFn.Store(nil)
		return
	}
	d.dropFn.Store(&fn)
}

// Delay returns the configured one-way delay.
func (d *Direction) Delay() time.Duration { return time.Duration(d.delay.Load()) }

// Loss returns the configured loss probability.
func (d *Direction) Loss() float64 { return math.Float64frombits(d.loss.Load()) }

// DirectionStats counts packets of one direction by fate.
type DirectionStats struct {
	Forwarded   uint64 // delivered to the other side
	Lost        uint64 // dropped by random loss
	QueueDrops  uint64 // dropped because the queue was full or the packet exceeded the MTU
	SYNDataDrop uint64 // dropped by Faults.DropSYNData
	NonSYNDrop  uint64 // dropped by Faults.DropNonSYN
	TFOStripped uint64 // forwarded with the TFO option removed
	Blackholed  uint64 // dropped by Faults.Blackhole
	Malformed   uint64 // not an IP packet (forwarded anyway unless blackholed)

	// SYNs (and SYN-ACKs) carrying payload that the faults let through (they may still be lost),
	// their payload bytes in total and the largest payload: with TFO, SYNDataBytes equals the
	// first writes that rode in SYNs.
	SYNData         uint64
	SYNDataBytes    uint64
	SYNDataMaxBytes uint64
}

// Stats returns the direction's counters.
func (d *Direction) Stats() DirectionStats {
	return DirectionStats{
		Forwarded:   d.forwarded.Load(),
		Lost:        d.lost.Load(),
		QueueDrops:  d.queueDrops.Load(),
		SYNDataDrop: d.synDataDrop.Load(),
		NonSYNDrop:  d.nonSYNDrop.Load(),
		TFOStripped: d.tfoStripped.Load(),
		Blackholed:  d.blackholed.Load(),
		Malformed:   d.malformed.Load(),

		SYNData:         d.synData.Load(),
		SYNDataBytes:    d.synDataBytes.Load(),
		SYNDataMaxBytes: d.synDataMax.Load(),
	}
}

// PathOptions configures NewPath/OpenPath.
type PathOptions struct {
	RTT       time.Duration // client ↔ server round-trip time (each direction delays RTT/2)
	Loss      float64       // client ↔ server loss probability, each direction
	Rate      int64         // client ↔ server rate limit in bit/s, each direction (0: unlimited)
	OriginRTT time.Duration // server ↔ origin round-trip time (0: no added delay)
	// OriginVeth makes the server ↔ origin link a veth pair (LinkOptions.Veth): with OriginRTT 0 it
	// adds nothing to the server's dial, where the forwarder adds its wake-ups to every packet.
	OriginVeth bool
	Faults     Faults // initial faults of the client ↔ server link
	Seed       uint64 // seed of the client ↔ server link's loss (LinkOptions.Seed)

	// net.ipv4.tcp_fastopen of each host (HostOptions.TCPFastOpen semantics:
	// zero means DefaultTCPFastOpen = 3, FastOpenOff disables).
	ClientTFO, ServerTFO, OriginTFO int
}

// Addrs are the addresses of one host on one link.
type Addrs struct {
	V4 netip.Addr // in 198.18.0.0/15
	V6 netip.Addr // in 2001:2::/48
}

// linkAddrs returns the addresses of side A (index 1) and side B (index 2)
// of the link with the given index within a lab: 198.18.<i>.{1,2}/24 and
// 2001:2:0:<i>::{1,2}/64.
func linkAddrs(index int) (a, b Addrs) {
	hi, lo := byte(index>>8), byte(index)
	// 198.18.0.0/15 holds 512 /24s: 198.18.0-255 and 198.19.0-255.
	a.V4 = netip.AddrFrom4([4]byte{198, 18 + hi, lo, 1})
	b.V4 = netip.AddrFrom4([4]byte{198, 18 + hi, lo, 2})
	a6 := [16]byte{0x20, 0x01, 0x00, 0x02, 0, 0, hi, lo, 15: 1}
	b6 := a6
	b6[15] = 2
	a.V6, b.V6 = netip.AddrFrom16(a6), netip.AddrFrom16(b6)
	return a, b
}

// maxLinks is how many links one lab can address (one /24 each in 198.18.0.0/15).
const maxLinks = 512
