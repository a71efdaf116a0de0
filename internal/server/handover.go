package server

import (
	"net"
	"sync"
)

// handover lets a server stop accepting without beginning its shutdown, for an upgrade that hands
// the listening socket to a new process: every connection an accept loop took off the socket is
// registered before the loop stops, so the shutdown that follows drains it. (Beginning the shutdown
// at once would race an Accept that has just returned: that connection would be closed unserved.)
type handover struct {
	once, closeOnce sync.Once
	stop            chan struct{} // closed by StopAccepting
	loops           sync.WaitGroup
}

func (h *handover) stopped() <-chan struct{} {
	h.once.Do(func() { h.stop = make(chan struct{}) })
	return h.stop
}

// StopAccepting closes lns (the listeners given to Serve; on an upgrade their sockets live on in
// the new process) and returns once every Serve loop has registered the last connection it accepted.
// The connections carry on; Serve returns at Shutdown or Close, which then drains them.
func (s *Server) StopAccepting(lns ...net.Listener) {
	s.handover.stopped()
	s.handover.closeOnce.Do(func() { close(s.handover.stop) })
	for _, ln := range lns {
		_ = ln.Close()
	}
	s.handover.loops.Wait()
}
