// Package outbound makes the connections that leave a fastrojan process: on the client, the Trojan
// connection to the server.
package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/fastrojan/fastrojan/internal/relay"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tfo/pathstate"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// Trojan dials a Trojan server: TCP, TLS, then the request header with the first payload in one
// write, which is one TLS record.
type Trojan struct {
	Server           string // host:port
	TLS              *tls.Config
	Hash             trojan.Hash
	HandshakeTimeout time.Duration // bounds TCP connect plus TLS handshake; default 10s
	// DialTFO opens a TCP connection with TCP Fast Open (a tfo.Dialer's DialContext), so the
	// ClientHello rides in the SYN; the connect then completes during the handshake, so
	// HandshakeTimeout is the connect timeout and refused or unreachable servers fail the handshake.
	// Nil means TFO is not used (without Paths) or a tfo.Dialer (with Paths).
	DialTFO func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialPlain opens a TCP connection without TFO; nil means a net.Dialer.
	DialPlain func(ctx context.Context, network, addr string) (net.Conn, error)
	// Observe, if set, is called after every handshake (from the goroutine that called Handshake)
	// with its duration, TFO outcome and ClientHello size; with Paths, for the connection kept.
	Observe func(HandshakeInfo)
	// Paths, if set, is the per-server TFO memory (DESIGN.md 3.5): DialTFO is then used only while
	// TFO works on the path to the server, DialPlain otherwise, and a TFO attempt whose handshake is
	// late races a DialPlain connection (see racer). Without Paths every connection uses DialTFO when
	// it is set, DialPlain otherwise.
	Paths *pathstate.Table
	// Resolve, with Paths, finds the addresses of a server name, which are then raced (RFC 8305
	// style, judged by TLS handshake completion); nil means net.DefaultResolver.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// PreferIPv4, with Paths, tries a server name's IPv4 addresses first (trojan-gfw's
	// tcp.prefer_ipv4); otherwise the resolver's first address decides which family goes first.
	PreferIPv4 bool
}

// MaxFirstPayload is how many bytes of application data may ride with the header: header plus
// payload must fit one TLS record (16 KiB).
const MaxFirstPayload = 16384 - 512

// Handshake connects to the server and completes TLS. The caller then calls Request. The client's
// last handshake flight (its Finished) is held back until the connection's first write, so it leaves
// in one segment with the request; a read or Close sends it too. A caller that does not write at
// once (a spare connection, a mux session) calls Open instead.
func (t *Trojan) Handshake(ctx context.Context) (*tls.Conn, error) {
	timeout := t.HandshakeTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if t.Paths != nil {
		return t.handshakeRaced(ctx, timeout)
	}
	dial, viaTFO := t.DialTFO, true
	if dial == nil {
		dial, viaTFO = t.plainDial(), false
	}
	start := time.Now()
	a := &attempt{start: start, viaTFO: viaTFO}
	a.run(ctx, dial, t.Server, t.TLS, timeout, nil)
	return t.finish(start, a, false)
}

// run dials addr and completes TLS on the connection, calling dialed (if set) once the dial
// returned a connection. It sets the attempt's fields as it goes; the error says what failed, with
// the server's address.
func (a *attempt) run(ctx context.Context, dial dialFunc, addr string, cfg *tls.Config, timeout time.Duration, dialed func()) {
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		a.err = fmt.Errorf("dial trojan server %s: %w", addr, err)
		return
	}
	a.dialEnd = time.Now()
	a.fw = newFlightConn(raw)
	if dialed != nil {
		dialed()
	}
	conn := tls.Client(relay.Batch(a.fw, raw), cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			a.err = fmt.Errorf("tls handshake with %s: no TLS handshake within %s: %w", addr, timeout, err)
		case connectFailed(err):
			// With TCP Fast Open the connect completes during the handshake.
			a.err = fmt.Errorf("connect to trojan server %s: %w", addr, err)
		default:
			a.err = fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		_ = a.fw.Flush() // an alert the handshake wrote, best effort: the connection is closed next
		return
	}
	a.fw.release()
	a.conn = conn
}

// finish reports the attempt that decides the handshake to Observe and returns its result; on
// failure it closes the connection below TLS (after Observe has read the kernel's view of it).
func (t *Trojan) finish(start time.Time, a *attempt, raced bool) (*tls.Conn, error) {
	if t.Observe != nil {
		info := HandshakeInfo{Server: t.Server, Duration: time.Since(start), Err: a.err, Raced: raced}
		if a.fw != nil {
			info.HelloBytes = a.fw.firstWriteSize()
			info.TFO = tfo.NotAttempted // a plain dial: no kernel read (TCP_INFO, /proc) per connection
			if a.viaTFO {
				info.TFO = tfo.ClientOutcome(a.fw.Conn)
			}
		}
		if a.conn != nil {
			info.Resumed = a.conn.ConnectionState().DidResume
		}
		t.Observe(info)
	}
	if a.err != nil {
		if a.fw != nil {
			_ = a.fw.Conn.Close()
		}
		return nil, a.err
	}
	return a.conn, nil
}

// dialFunc opens a TCP connection.
type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// plainDial is the dial without TCP Fast Open.
func (t *Trojan) plainDial() dialFunc {
	if t.DialPlain != nil {
		return t.DialPlain
	}
	d := &net.Dialer{}
	return d.DialContext
}

// tfoDial is the dial with TCP Fast Open.
func (t *Trojan) tfoDial() dialFunc {
	if t.DialTFO != nil {
		return t.DialTFO
	}
	return (&tfo.Dialer{}).DialContext
}

// connectFailed reports errors that mean the TCP connection itself failed.
func connectFailed(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ETIMEDOUT)
}

// Request writes the Trojan header for cmd and dest followed by payload, as one write.
func (t *Trojan) Request(conn net.Conn, cmd trojan.Command, dest trojan.Addr, payload []byte) error {
	if len(payload) > MaxFirstPayload {
		return fmt.Errorf("trojan request: first payload %d bytes exceeds %d", len(payload), MaxFirstPayload)
	}
	b := make([]byte, 0, trojan.HashLen+2+1+1+256+2+2+len(payload))
	b, err := trojan.AppendRequest(b, trojan.Request{Hash: t.Hash, Cmd: cmd, Dest: dest})
	if err != nil {
		return fmt.Errorf("trojan request to %s: %w", dest, err)
	}
	b = append(b, payload...)
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("trojan request to %s via %s: %w", dest, t.Server, err)
	}
	return nil
}

// Connect is Handshake followed by a CONNECT request carrying payload.
func (t *Trojan) Connect(ctx context.Context, dest trojan.Addr, payload []byte) (*tls.Conn, error) {
	conn, err := t.Handshake(ctx)
	if err != nil {
		return nil, err
	}
	if err := t.Request(conn, trojan.CmdConnect, dest, payload); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// flightBelow finds the flightConn under conn's TLS (below the relay's BatchConn), or nil.
func flightBelow(conn *tls.Conn) *flightConn {
	var c net.Conn = conn
	for range 4 {
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		if c = nc.NetConn(); c == nil {
			return nil
		}
		if f, ok := c.(*flightConn); ok {
			return f
		}
	}
	return nil
}

// Open is Handshake as a net.Conn for a pool's or a mux session's dial (no typed nil on failure):
// the handshake's last flight is sent at once, since the connection may wait before its first write.
func (t *Trojan) Open(ctx context.Context) (net.Conn, error) {
	conn, err := t.Handshake(ctx)
	if err != nil {
		return nil, err
	}
	if f := flightBelow(conn); f != nil {
		if err := f.Flush(); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("trojan server %s: %w", t.Server, err)
		}
	}
	return conn, nil
}
