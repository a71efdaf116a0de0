package outbound

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// flightConn is the connection below the client's TLS. It records the size of the first write (the
// ClientHello, which a TFO SYN must carry) and, while holding, keeps every later write back until
// the connection is read, written after release, flushed or closed. So the handshake's last flight
// (the client's Finished, which no read follows in TLS 1.3) leaves in the same segment as the
// first application record, the Trojan request: one packet less to lose and one syscall less per
// connection. A flight that expects an answer (a second ClientHello after HelloRetryRequest, TLS
// 1.2's Finished) goes out when the handshake reads that answer, so holding never delays it.
//
// It exposes the connection below with NetConn, so tfo and relay still find the socket.
type flightConn struct {
	net.Conn

	active atomic.Bool // holding, or bytes held: Read, Write and Close take mu

	mu      sync.Mutex
	n       int    // size of the first write; set once, by the handshake, before anyone else writes
	holding bool   // writes after the first are kept back
	held    []byte // kept back, in order
}

// newFlightConn wraps c, holding writes after the first until release or a read.
func newFlightConn(c net.Conn) *flightConn {
	f := &flightConn{Conn: c, holding: true}
	f.active.Store(true)
	return f
}

// firstWriteSize is the size of the first write (0 before it).
func (f *flightConn) firstWriteSize() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *flightConn) Write(b []byte) (int, error) {
	if !f.active.Load() {
		return f.Conn.Write(b)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.n == 0:
		f.n = len(b)
		return f.Conn.Write(b)
	case f.holding:
		f.held = append(f.held, b...)
		return len(b), nil
	case len(f.held) == 0:
		f.active.Store(false)
		return f.Conn.Write(b)
	}
	buf := append(f.held, b...)
	f.held = nil
	f.active.Store(false)
	n, err := f.Conn.Write(buf)
	if err != nil {
		return max(n-(len(buf)-len(b)), 0), err
	}
	return len(b), nil
}

func (f *flightConn) Read(b []byte) (int, error) {
	if f.active.Load() {
		// The peer may be waiting for what is held.
		if err := f.flush(false); err != nil {
			return 0, err
		}
	}
	return f.Conn.Read(b)
}

// release ends holding: what is held goes out with the next write (or read, flush, close).
func (f *flightConn) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holding = false
	if len(f.held) == 0 {
		f.active.Store(false)
	}
}

// Flush ends holding and writes what is held now.
func (f *flightConn) Flush() error { return f.flush(true) }

// flush writes what is held; end also ends holding.
func (f *flightConn) flush(end bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if end {
		f.holding = false
	}
	if !f.holding {
		f.active.Store(false)
	}
	if len(f.held) == 0 {
		return nil
	}
	held := f.held
	f.held = nil
	if _, err := f.Conn.Write(held); err != nil {
		return fmt.Errorf("write the tls handshake's last flight: %w", err)
	}
	return nil
}

// Close sends what is held (a Finished or an alert the peer would otherwise miss) when no write
// is in progress, then closes the connection.
func (f *flightConn) Close() error {
	if f.active.Load() && f.mu.TryLock() {
		f.holding = false
		f.active.Store(false)
		if len(f.held) > 0 {
			_, _ = f.Conn.Write(f.held)
			f.held = nil
		}
		f.mu.Unlock()
	}
	return f.Conn.Close()
}

// NetConn returns the connection below.
func (f *flightConn) NetConn() net.Conn { return f.Conn }
