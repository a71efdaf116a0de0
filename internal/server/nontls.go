package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/fastrojan/fastrojan/internal/decoy"
	"github.com/fastrojan/fastrojan/internal/relay"
)

// What nginx does after an error page (its lingering close): it half-closes, then reads and
// discards what the client still sends while bytes keep coming within lingeringTimeout, for at most
// lingeringTime, so that its close does not reset the page away. lingerMax bounds what is drained.
const (
	lingeringTimeout = 5 * time.Second
	lingeringTime    = 30 * time.Second
	lingerMax        = 1 << 20
	decoyReadChunk   = 16 << 10 // one TLS record: what OpenSSL reads at once before it gives up
)

// Outcomes of non-TLS connections.
const (
	outDecoy   = "decoy_answer"
	outTLSSite = "tls_site"
)

// serveNonTLS handles a connection whose first byte is not a TLS handshake record: relayed raw to
// TLSSite when one is set; else answered with PlainHTTPResponse when set (trojan-gfw's option); else
// answered as nginx would on its TLS port. The connection's deadline is still the handshake deadline
// from accept: an HTTPS server gives a client that long to say something it understands.
func (s *Server) serveNonTLS(c net.Conn, first []byte, l *connLog) {
	switch {
	case s.opts.TLSSite != "":
		s.relayTLSSite(c, first, l)
	case len(s.opts.PlainHTTPResponse) > 0:
		s.plainResponse(c, first, l)
	default:
		s.answerDecoy(c, first, l)
	}
}

// relayTLSSite hands c, with the bytes read so far, to the real HTTPS server at TLSSite, raw, so
// that whatever it answers (and how it ends the connection) is what the client sees.
func (s *Server) relayTLSSite(c net.Conn, seen []byte, l *connLog) {
	s.tlsSite.Add(1)
	l.outcome = outTLSSite
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.DialTimeout)
	site, err := s.opts.Dial(ctx, "tcp", s.opts.TLSSite)
	cancel()
	if err != nil {
		l.outcome, l.err = outFallbackDown, fmt.Errorf("dial tls_site %s: %w", s.opts.TLSSite, err)
		return
	}
	defer site.Close()
	_ = c.SetDeadline(time.Time{})
	if len(seen) > 0 {
		_ = site.SetWriteDeadline(time.Now().Add(s.opts.IdleTimeout))
		n, err := site.Write(seen)
		l.up += int64(n)
		if err != nil {
			l.err = fmt.Errorf("replay to tls_site: %w", err)
			return
		}
	}
	up, down, err := relay.PipeOpts(c, site, relay.Options{Idle: s.opts.IdleTimeout, UntilEOF: true, NoSplice: true})
	l.up += up
	l.down += down
	l.err = err
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		abortive(c) // the site reset the connection: so do we, as the client would see from it
	}
}

// abortive makes Close send an RST instead of a FIN.
func abortive(c net.Conn) {
	if tc, ok := c.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	}
}

// answerDecoy reads until decoy.Judge decides, within the handshake deadline, and answers as nginx.
func (s *Server) answerDecoy(c net.Conn, first []byte, l *connLog) {
	s.decoys.Add(1)
	l.outcome = outDecoy
	buf := make([]byte, 0, 1<<10) // nginx's client_header_buffer_size
	buf = append(buf, first...)
	v := decoy.Judge(buf)
	for v.Kind == decoy.More {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, min(cap(buf), decoyReadChunk))...)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		prev := len(buf)
		buf = buf[:len(buf)+n]
		if n > 0 && decoy.Changed(buf, prev) {
			v = decoy.Judge(buf)
		}
		if err != nil {
			l.up = int64(len(buf))
			if !errors.Is(err, io.EOF) && !isTimeout(err) {
				l.err = err
			}
			return // EOF or the header timeout: nginx closes without a word
		}
	}
	l.up = int64(len(buf))
	if v.Kind == decoy.Close {
		return
	}
	resp := decoy.Response(v, s.serverToken(), time.Now())
	_ = c.SetWriteDeadline(time.Now().Add(lingeringTimeout))
	n, err := c.Write(resp)
	l.down = int64(n)
	if err != nil {
		l.err = err
		return
	}
	if v.Kind == decoy.Alert {
		return // OpenSSL's alert: nginx closes at once
	}
	if v.BodyPending > 0 {
		// nginx reads the announced body to discard it, then closes; a body that stops coming for
		// lingeringTimeout ends the wait.
		_ = c.SetReadDeadline(time.Now().Add(lingeringTimeout))
		m, _ := io.Copy(io.Discard, io.LimitReader(idleReader{c}, v.BodyPending))
		l.up += m
		return
	}
	if err := relay.CloseWrite(c); err != nil {
		return
	}
	l.up += linger(c)
}

// linger drains c after its write side is closed, as nginx's lingering close.
func linger(c net.Conn) int64 {
	end := time.Now().Add(lingeringTime)
	var total int64
	buf := make([]byte, 4<<10)
	for total < lingerMax {
		d := time.Now().Add(lingeringTimeout)
		if d.After(end) {
			d = end
		}
		_ = c.SetReadDeadline(d)
		n, err := c.Read(buf)
		total += int64(n)
		if err != nil {
			break
		}
	}
	return total
}

// idleReader extends c's read deadline by lingeringTimeout after every read that returned bytes.
type idleReader struct{ c net.Conn }

func (r idleReader) Read(b []byte) (int, error) {
	n, err := r.c.Read(b)
	if n > 0 {
		_ = r.c.SetReadDeadline(time.Now().Add(lingeringTimeout))
	}
	return n, err
}

// plainResponse writes PlainHTTPResponse raw and closes (trojan-gfw's ssl.plain_http_response).
func (s *Server) plainResponse(c net.Conn, first []byte, l *connLog) {
	s.plainHTTP.Add(1)
	l.outcome = outPlainHTTP
	_ = c.SetDeadline(time.Now().Add(s.opts.RequestTimeout))
	n, err := c.Write(s.opts.PlainHTTPResponse)
	l.down = int64(n)
	if err != nil {
		l.err = err
		return
	}
	// Send FIN, then read what the client still sends for a moment, so the close that follows finds
	// an empty receive queue and does not reset the answer away.
	if err := relay.CloseWrite(c); err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(min(plainLinger, s.opts.RequestTimeout)))
	m, _ := io.Copy(io.Discard, io.LimitReader(c, plainDrainMax))
	l.up = int64(len(first)) + m
}
