package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/fastrojan/fastrojan/internal/relay"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
)

// recordTypeHandshake is the first byte of every TLS ClientHello record.
const recordTypeHandshake = 0x16

// requestBufSize caps what the server reads before it decides between target and fallback: one TLS
// record of plaintext, far more than the longest header (trojan.MaxRequestLen).
const requestBufSize = 16 << 10

// plainLinger bounds how long a connection answered with PlainHTTPResponse is drained after the
// answer, so that closing it does not reset the answer away; plainDrainMax bounds the bytes drained.
const (
	plainLinger   = 2 * time.Second
	plainDrainMax = 64 << 10
)

var requestBufs = sync.Pool{New: func() any { b := make([]byte, requestBufSize); return &b }}

// requestBuf is a pooled first-request buffer, given back before a relay starts so an idle tunnel
// does not hold it.
type requestBuf struct {
	b []byte
	p *[]byte
}

func getRequestBuf() *requestBuf {
	p := requestBufs.Get().(*[]byte)
	return &requestBuf{b: *p, p: p}
}

// release returns the buffer to the pool; it is safe on nil and when called twice.
func (rb *requestBuf) release() {
	if rb == nil || rb.p == nil {
		return
	}
	requestBufs.Put(rb.p)
	rb.p, rb.b = nil, nil
}

// Outcomes, one per connection, as logged.
const (
	outConnect      = "connect"
	outFallback     = "fallback"
	outPlainHTTP    = "plain_http_response"
	outNoBytes      = "closed_before_data"
	outTLSFailed    = "tls_handshake_failed"
	outReadFailed   = "request_read_failed"
	outDialFailed   = "dial_failed"
	outNoFallback   = "fallback_unavailable"
	outFallbackDown = "fallback_dial_failed"
	// outACMEChallenge: an ACME CA's TLS-ALPN-01 check (the handshake negotiated acme-tls/1).
	outACMEChallenge = "acme_challenge"
)

// acmeTLS1 is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737). Only a tls.Config that
// offers it (the ACME manager's, for a ClientHello asking for nothing else) can negotiate it.
const acmeTLS1 = "acme-tls/1"

// connLog collects what the one log line of a connection says.
type connLog struct {
	outcome string
	reason  string // why a fallback
	user    string
	dest    string
	up      int64 // bytes from the client
	down    int64 // bytes to the client
	err     error
	connTFO
	sess *users.Session // accounting of an authenticated user; nil-safe, nil when not counted
}

func (s *Server) handle(c net.Conn) {
	start := time.Now()
	s.active.Add(1)
	defer func() {
		tfo.ResetIfHalfOpen(c) // a client that never completed the handshake: free its TFO queue slot now
		_ = c.Close()
		s.active.Add(-1)
		s.perIP.release(c)
		<-s.slots
		s.set.Remove(c)
	}()
	var l connLog
	l.tfoAccept = tfo.ServerOutcome(c)
	_ = c.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	var first [1]byte
	switch _, err := io.ReadFull(c, first[:]); {
	case err != nil:
		l.outcome, l.err = outNoBytes, err
	case first[0] != recordTypeHandshake:
		s.serveNonTLS(c, first[:], &l)
	default:
		// The setup (TLS handshake, request, target dial) runs on a goroutine of its own and hands
		// back the relay, which runs here with nothing deep below it: an idle tunnel parks this
		// goroutine about 2 KB deep, on a 4 KiB stack, where the setup's call chain kept it 4.9 KB
		// deep on an 8 KiB one for the tunnel's life (the runtime shrinks a stack only below a
		// quarter in use). A connection that sends nothing, or no TLS, costs one goroutine, as
		// before (the handshake had a goroutine of its own already).
		var relayLater func()
		_ = relay.OnFreshStack(func() error { relayLater = s.serveTLS(c, first[:], &l); return nil })
		if relayLater != nil {
			relayLater()
		}
	}
	s.report(c, &l, start)
	s.logConn(c, &l, start)
}

// logConn writes the connection's one debug line (apart from handle, whose frame stays small).
func (s *Server) logConn(c net.Conn, l *connLog, start time.Time) {
	if !s.log.Enabled(s.ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("remote", c.RemoteAddr().String()),
		slog.String("outcome", l.outcome),
	}
	if l.reason != "" {
		attrs = append(attrs, slog.String("reason", l.reason))
	}
	if l.user != "" {
		attrs = append(attrs, slog.String("user", l.user))
	}
	if l.dest != "" {
		attrs = append(attrs, slog.String("dest", l.dest))
	}
	attrs = append(attrs, slog.Int64("up", l.up), slog.Int64("down", l.down),
		slog.Duration("duration", time.Since(start).Round(time.Millisecond)))
	attrs = l.attrs(attrs)
	if l.err != nil {
		attrs = append(attrs, slog.String("err", l.err.Error()))
	}
	s.log.LogAttrs(s.ctx, slog.LevelDebug, "connection", attrs...)
}

// serveTLS serves a connection whose first byte, read under the handshake deadline, starts a TLS
// record. It returns nil once the connection is done, or the relay that serves the rest of it (with
// every cleanup after it), for the caller to run. The caller closes c.
func (s *Server) serveTLS(c net.Conn, first []byte, l *connLog) (relayLater func()) {
	tc, ok := s.handshake(c, first, l)
	if !ok {
		_ = tc.Close() // close_notify, bounded by tls's own 5s write deadline
		return nil
	}
	_ = c.SetDeadline(time.Time{})
	return followedBy(s.serveRequest(c, tc, l), func() { _ = tc.Close() })
}

// followedBy returns relay with cleanup to run after it, for the caller to run; with no relay (the
// connection is done) it runs cleanup now and returns nil.
func followedBy(relay func(), cleanup func()) func() {
	if relay == nil {
		cleanup()
		return nil
	}
	return func() {
		defer cleanup()
		relay()
	}
}

// handshake runs the TLS handshake on c, whose first byte was already read. ok is false when the
// connection ends there: a failed handshake (relayed raw to tls_site if it is one we refuse) or an
// ACME CA's TLS-ALPN-01 check. The caller closes tc either way.
func (s *Server) handshake(c net.Conn, first []byte, l *connLog) (tc *tls.Conn, ok bool) {
	var under net.Conn = &replayConn{Conn: c, pending: first}
	var held *heldConn // with tls_site: a handshake we refuse goes there raw (refused.go)
	if s.opts.TLSSite != "" {
		held = &heldConn{Conn: under}
		under = held
	}
	tc = tls.Server(relay.Batch(under, c), s.opts.TLSConfig)
	hsStart := time.Now()
	err := tc.Handshake() // on the setup's fresh goroutine (handle): what it costs the stack is not kept
	if err == nil && held != nil {
		err = held.done()
	}
	if err != nil {
		tfo.ResetIfHalfOpen(c) // before tc.Close closes c: see handle
		s.tlsFailures.Add(1)
		if held.refused(err) {
			s.relayTLSSite(c, held.seen, l)
			return tc, false
		}
		l.outcome, l.err = outTLSFailed, err
		return tc, false
	}
	l.handshake = time.Since(hsStart)
	st := tc.ConnectionState()
	l.resumed = st.DidResume
	if st.NegotiatedProtocol == acmeTLS1 {
		// An ACME CA checking a TLS-ALPN-01 challenge: the handshake was the answer, and the CA
		// closes without sending anything (RFC 8737 §3).
		l.outcome = outACMEChallenge
		return tc, false
	}
	return tc, true
}

// serveRequest reads the Trojan request from tc and serves it: an authenticated request as its
// command asks, anything else by the fallback. A CONNECT's relay is returned, not run (serveTLS).
func (s *Server) serveRequest(c net.Conn, tc *tls.Conn, l *connLog) (relayLater func()) {
	rb := getRequestBuf()
	defer rb.release()
	buf := rb.b
	n := 0
	for {
		var m int
		var rerr error
		if n == 0 {
			m, rerr = s.readSilent(c, tc, buf) // a client's spare may wait here (spare.go)
			if errors.Is(rerr, errShutdownSilent) {
				l.outcome, l.reason = outNoBytes, "shutdown while silent"
				return nil
			}
		} else {
			m, rerr = tc.Read(buf[n:])
		}
		n += m
		v := classify(buf[:n], s.opts.Users)
		switch v.kind {
		case verdictConnect:
			return s.serveAuthenticated(c, tc, &v, buf[:n], rb, l)
		case verdictFallback:
			l.reason = v.reason
			s.fallback(tc, buf[:n], rb, l)
			return nil
		}
		switch {
		case rerr == nil && n < len(buf):
			continue
		case rerr == nil:
			l.reason = "request too long" // unreachable: a header fits many times over
		case errors.Is(rerr, io.EOF):
			l.reason = "client ended before a complete request"
		case isTimeout(rerr):
			l.reason = "request timeout"
		default:
			l.outcome, l.err = outReadFailed, rerr
			return nil
		}
		s.fallback(tc, buf[:n], rb, l)
		return nil
	}
}

// serveAuthenticated serves a request with a known password (read so far: req, in rb) within the
// user's session: UDP ASSOCIATE and mux here, CONNECT by the relay it returns (the session ends
// after it).
func (s *Server) serveAuthenticated(c net.Conn, tc *tls.Conn, v *verdict, req []byte, rb *requestBuf, l *connLog) (relayLater func()) {
	sess, ok := s.beginSession(c, v.user)
	if !ok { // deleted or over quota since the lookup: as an unknown password
		l.reason = "unknown password"
		s.fallback(tc, req, rb, l)
		return nil
	}
	l.sess = sess
	l.user, l.dest = v.user.Name, v.req.Dest.String()
	s.authenticated.Add(1)
	payload := req[v.hdrLen:]
	switch v.req.Cmd {
	case trojan.CmdUDPAssociate:
		defer sess.End()
		s.udpAssociate(tc, payload, rb, l)
		return nil
	case trojan.CmdMux:
		defer sess.End()
		s.serveMux(tc, payload, rb, l)
		return nil
	}
	return followedBy(s.connect(tc, v.req, payload, rb, l), sess.End)
}

// connect dials an authenticated CONNECT's target and writes payload, what followed the header
// (rb, which holds it, is released then), and returns the relay between client and target, which
// closes the target when done; nil when the target could not be reached or written.
func (s *Server) connect(client net.Conn, req trojan.Request, payload []byte, rb *requestBuf, l *connLog) (relayLater func()) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.DialTimeout)
	dial, withTFO := s.opts.Dial, false
	if len(payload) > 0 && s.opts.DialFirst != nil {
		dial, withTFO = s.opts.DialFirst, true // the payload, written next, rides in the SYN
	}
	target, err := dial(ctx, "tcp", req.Dest.String())
	cancel()
	if err != nil {
		l.outcome, l.err = outDialFailed, fmt.Errorf("dial %s: %w", req.Dest, err)
		return nil
	}
	done := func() {
		l.dialOutcome(target, withTFO) // before Close: TCP_INFO needs the socket
		_ = target.Close()
	}
	l.outcome = outConnect
	if len(payload) > 0 {
		_ = target.SetWriteDeadline(time.Now().Add(s.opts.IdleTimeout))
		n, err := target.Write(payload)
		l.up += int64(n)
		addCount(l.sess.Up(), n)
		if err != nil {
			l.err = fmt.Errorf("write first payload to %s: %w", req.Dest, err)
			done()
			return nil
		}
	}
	rb.release()
	return func() {
		defer done()
		up, down, err := relay.PipeOpts(client, target, relay.Options{Idle: s.opts.IdleTimeout, AToB: l.sess.Up(), BToA: l.sess.Down()})
		l.up += up
		l.down += down
		l.err = err
	}
}

// fallback hands client to the fallback site: it replays seen, every byte read so far, and relays
// both ways from then on. rb, if not nil, holds seen and is released once seen is written.
// fallbackAddr is where client goes: the site for its negotiated ALPN protocol if one is configured
// (trojan-gfw's ssl.alpn_port_override, e.g. h2 to an h2c port), else Fallback.
func (s *Server) fallbackAddr(client net.Conn) string {
	if tc, ok := client.(*tls.Conn); ok && len(s.opts.FallbackByALPN) > 0 {
		if addr, ok := s.opts.FallbackByALPN[tc.ConnectionState().NegotiatedProtocol]; ok {
			return addr
		}
	}
	return s.opts.Fallback
}

func (s *Server) fallback(client net.Conn, seen []byte, rb *requestBuf, l *connLog) {
	s.fallbacks.Add(1)
	if s.opts.Fallback == "" {
		l.outcome = outNoFallback
		return
	}
	addr := s.fallbackAddr(client)
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.DialTimeout)
	site, err := s.opts.Dial(ctx, "tcp", addr)
	cancel()
	if err != nil {
		l.outcome, l.err = outFallbackDown, fmt.Errorf("dial fallback %s: %w", addr, err)
		return
	}
	defer site.Close()
	l.outcome = outFallback
	if len(seen) > 0 {
		_ = site.SetWriteDeadline(time.Now().Add(s.opts.IdleTimeout))
		n, err := site.Write(seen)
		l.up += int64(n)
		if err != nil {
			l.err = fmt.Errorf("replay to fallback: %w", err)
			return
		}
	}
	rb.release()
	// The site decides when the connection ends, as it would if the prober talked to it directly.
	up, down, err := relay.PipeUntilEOF(client, site, s.opts.IdleTimeout)
	l.up += up
	l.down += down
	l.err = err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// replayConn is a connection whose first bytes were already read: Read returns them first.
type replayConn struct {
	net.Conn
	pending []byte
}

func (r *replayConn) Read(b []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(b, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.Conn.Read(b)
}

// CloseWrite half-closes the connection underneath, so TLS's close_notify is followed by a FIN.
func (r *replayConn) CloseWrite() error { return relay.CloseWrite(r.Conn) }
