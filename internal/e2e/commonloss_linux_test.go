package e2e

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"

	"github.com/fastrojan/fastrojan/internal/netlab"
)

// commonLoss drops packets of a lab link with common random numbers, for comparing two
// implementations fetch by fetch. The packets of the connections a fetch opens (known by the
// client port of their SYN) draw in order, per direction, from a stream seeded by (seed, fetch,
// direction): the n-th packet each way of the i-th fetch meets the same draw whichever
// implementation sends it. Packets of other connections (the close of the fetch before, by either
// implementation, still in flight) draw from a stream of their own with the same loss, so they
// neither escape the loss nor use up the fetch's draws. Direction 0 is client to server (the
// client port is the source port).
type commonLoss struct {
	loss float64
	seed uint64

	mu    sync.Mutex     // the two directions' forwarders call drop concurrently
	run   int            // counts begin calls: one per fetch per implementation
	owner map[uint16]int // client port → the run whose SYN it sent
	draws [2]*rand.Rand  // the fetch's own streams
	other [2]*rand.Rand  // everything else's
	pkts  fetchPackets
}

// fetchPackets counts the packets of one fetch's own connections on the link.
type fetchPackets struct {
	up, down int
	lost     []string // each dropped packet, as "→SYN+283"
}

func newCommonLoss(loss float64, seed uint64) *commonLoss {
	return &commonLoss{loss: loss, seed: seed, owner: make(map[uint16]int),
		other: [2]*rand.Rand{rand.New(rand.NewPCG(seed, 1<<62)), rand.New(rand.NewPCG(seed, 1<<62|1))}}
}

// begin starts fetch number fetch of one implementation: the connections it opens from now on draw
// from the fetch's own streams.
func (c *commonLoss) begin(fetch int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.run++
	for d := range c.draws {
		c.draws[d] = rand.New(rand.NewPCG(c.seed, uint64(fetch)<<1|uint64(d)))
	}
	c.pkts = fetchPackets{}
}

// end returns what the current fetch's connections sent so far.
func (c *commonLoss) end() fetchPackets {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pkts
}

// drop is the link's drop function for direction d.
func (c *commonLoss) drop(d int, pkt []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	seg, ok := netlab.ParseSegment(pkt)
	port := seg.SrcPort
	if d == 1 {
		port = seg.DstPort
	}
	if ok && d == 0 && seg.SYN() && c.run > 0 {
		c.owner[port] = c.run
	}
	if run, own := c.owner[port]; !ok || !own || run != c.run {
		return c.other[d].Float64() < c.loss
	}
	lost := c.draws[d].Float64() < c.loss
	if d == 0 {
		c.pkts.up++
	} else {
		c.pkts.down++
	}
	if lost {
		c.pkts.lost = append(c.pkts.lost, describeSegment(d, seg))
	}
	return lost
}

// describeSegment names a packet for the log: direction, flags, payload size.
func describeSegment(d int, s netlab.Segment) string {
	var b strings.Builder
	b.WriteString([]string{"→", "←"}[d])
	var names []string
	for _, f := range []struct {
		bit  uint8
		name string
	}{{0x02, "SYN"}, {0x04, "RST"}, {0x01, "FIN"}, {0x10, "ACK"}} {
		if s.Flags&f.bit != 0 {
			names = append(names, f.name)
		}
	}
	b.WriteString(strings.Join(names, "-"))
	if s.Payload > 0 {
		fmt.Fprintf(&b, "+%d", s.Payload)
	}
	return b.String()
}

// lostList is the fetch's dropped packets for the log.
func (p fetchPackets) lostList() string {
	if len(p.lost) == 0 {
		return "none"
	}
	return strings.Join(p.lost, " ")
}
