package netlab

import "sync/atomic"

// maxFlows bounds the ECMP flow table; when it is full it is cleared, and
// flows are assigned afresh to the current target.
const maxFlows = 1 << 16

// steering picks the B host for each A→B packet of an ECMP link. target
// and epoch are set by the switch (any goroutine); flows and seen belong to
// the one goroutine that reads side A.
type steering struct {
	n      int // number of B hosts
	target atomic.Int32
	epoch  atomic.Uint64 // bumped by MoveAllFlows: forget every flow

	seen  uint64
	flows map[flowKey]int32
}

// choose returns the index of the B host for a packet. A flow keeps the
// host it was first seen on until MoveAllFlows; packets that are not IP
// go to the current target.
func (s *steering) choose(pi *pktInfo, ok bool) int {
	if s.n <= 1 {
		return 0
	}
	t := s.target.Load()
	if e := s.epoch.Load(); e != s.seen {
		clear(s.flows)
		s.seen = e
	}
	if !ok {
		return int(t)
	}
	k := pi.flow()
	if v, found := s.flows[k]; found {
		return int(v)
	}
	if s.flows == nil {
		s.flows = make(map[flowKey]int32)
	}
	if len(s.flows) >= maxFlows {
		clear(s.flows)
	}
	s.flows[k] = t
	return int(t)
}
