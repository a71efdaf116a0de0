package server

import (
	"log/slog"
	"net"
	"time"

	"github.com/fastrojan/fastrojan/internal/tfo"
)

// ConnInfo describes one finished connection, for metrics (Options.OnConn).
type ConnInfo struct {
	Remote    string
	Outcome   string // "connect", "fallback", "tls_handshake_failed", ...
	User      string
	Dest      string
	Up, Down  int64         // bytes from and to the client
	Duration  time.Duration // accept to close
	Handshake time.Duration // TLS handshake time; zero if none completed
	Resumed   bool          // the handshake resumed a TLS session (ssl.reuse_session)
	// TFOAccept is the kernel's verdict on the client's SYN at accept: Accepted when its data (the
	// ClientHello) was accepted.
	TFOAccept tfo.Outcome
	// Dialed is set when a target was dialed; TFODial is then the outcome of that dial (the
	// client's first payload rides in the SYN when Options.Dial uses TFO).
	Dialed  bool
	TFODial tfo.Outcome
	// MuxStream marks a stream of a trojan-go mux session (its connection is reported once more,
	// with Outcome "mux"); TFOAccept and Handshake are then not set.
	MuxStream bool
}

// connTFO is the part of connLog this file fills in.
type connTFO struct {
	tfoAccept tfo.Outcome
	dialed    bool
	tfoDial   tfo.Outcome
	handshake time.Duration
	resumed   bool
}

// dialOutcome records the TFO outcome of the connection to a target; call it before closing target.
// A target dialed without TCP Fast Open (no first payload, or no tcp.fast_open toward targets) is
// NotAttempted without asking the kernel: three system calls and a /proc read per connection saved.
func (l *connTFO) dialOutcome(target net.Conn, withTFO bool) {
	l.dialed = true
	l.tfoDial = tfo.NotAttempted
	if withTFO {
		l.tfoDial = tfo.ClientOutcome(target)
	}
}

func (l *connTFO) attrs(a []slog.Attr) []slog.Attr {
	a = append(a, slog.String("tfo", l.tfoAccept.String()))
	if l.dialed {
		a = append(a, slog.String("tfo_dial", l.tfoDial.String()))
	}
	if l.handshake > 0 {
		a = append(a, slog.Duration("handshake", l.handshake.Round(time.Microsecond)))
	}
	return a
}

// report hands the connection's summary to Options.OnConn.
func (s *Server) report(c net.Conn, l *connLog, start time.Time) {
	if s.opts.OnConn == nil {
		return
	}
	s.opts.OnConn(ConnInfo{
		Remote: c.RemoteAddr().String(), Outcome: l.outcome, User: l.user, Dest: l.dest,
		Up: l.up, Down: l.down, Duration: time.Since(start), Handshake: l.handshake, Resumed: l.resumed,
		TFOAccept: l.tfoAccept, Dialed: l.dialed, TFODial: l.tfoDial,
	})
}

// reportStream reports one stream of a mux session to OnConn.
func (s *Server) reportStream(c net.Conn, l *connLog, start time.Time) {
	if s.opts.OnConn == nil {
		return
	}
	s.opts.OnConn(ConnInfo{
		Remote: c.RemoteAddr().String(), Outcome: l.outcome, User: l.user, Dest: l.dest,
		Up: l.up, Down: l.down, Duration: time.Since(start),
		Dialed: l.dialed, TFODial: l.tfoDial, MuxStream: true,
	})
}
