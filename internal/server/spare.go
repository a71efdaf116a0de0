package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"
)

// errShutdownSilent ends a connection that was still silent after TLS when the shutdown began.
var errShutdownSilent = errors.New("server shutting down while the connection was silent")

// silentDrainGrace is how long a connection silent after TLS may still send its request once the
// shutdown began: a client that just finished its handshake sends within a round trip or two, a spare
// sends nothing and is closed (its client sees the FIN and uses another connection).
const silentDrainGrace = time.Second

// readSilent is the first read after the TLS handshake. A client may open a connection before it
// needs it (a spare, package pool) and send its request later, so silence is allowed for
// SpareTimeout, as an HTTPS server keeps an idle connection (nginx: 60 s). Once the first bytes
// arrive the rest of the request must follow within RequestTimeout, exactly as before, so a prober's
// partial or garbage request still reaches the fallback when it did. A shutdown cuts the silent wait
// to silentDrainGrace: the client has sent nothing and loses nothing.
func (s *Server) readSilent(c net.Conn, tc *tls.Conn, buf []byte) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(s.opts.SpareTimeout))
	stop := context.AfterFunc(s.draining, func() { _ = c.SetReadDeadline(time.Now().Add(silentDrainGrace)) })
	m, err := tc.Read(buf)
	stopped := !stop()
	if err != nil && stopped && isTimeout(err) && m == 0 {
		return 0, errShutdownSilent
	}
	_ = c.SetReadDeadline(time.Now().Add(s.opts.RequestTimeout))
	return m, err
}
