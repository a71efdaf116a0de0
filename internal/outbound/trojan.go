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
	// Dial opens the TCP connection; nil means a net.Dialer. A tfo.Dialer's DialContext makes the
	// ClientHello ride in the SYN; the connect then completes during the handshake, so
	// HandshakeTimeout is the connect timeout and refused or unreachable servers fail the handshake.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Observe, if set, is called after every handshake attempt (from the goroutine that called
	// Handshake) with its duration, TFO outcome and ClientHello size.
	Observe func(HandshakeInfo)
	// Paths, if set, is the per-server TFO memory (DESIGN.md 3.5): Dial is then used only while TFO
	// works on the path to the server, DialPlain otherwise, and a TFO attempt whose handshake is late
	// races a DialPlain connection (see handshakeRaced). Observe then sees the connection kept.
	Paths *pathstate.Table
	// DialPlain opens a TCP connection without TFO, for Paths; nil means a net.Dialer.
	DialPlain func(ctx context.Context, network, addr string) (net.Conn, error)
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

// Handshake connects to the server and completes TLS. The caller then calls Request.
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
	dial := t.Dial
	if dial == nil {
		d := &net.Dialer{}
		dial = d.DialContext
	}
	start := time.Now()
	raw, err := dial(ctx, "tcp", t.Server)
	if err != nil {
		err = fmt.Errorf("dial trojan server %s: %w", t.Server, err)
		t.observe(start, nil, nil, err)
		return nil, err
	}
	fw := &firstWrite{Conn: raw}
	conn := tls.Client(fw, t.TLS)
	if err := conn.HandshakeContext(ctx); err != nil {
		defer raw.Close() // after observe has read TCP_INFO
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			err = fmt.Errorf("no TLS handshake within %s: %w", timeout, err)
		case connectFailed(err):
			// With TCP Fast Open the connect completes during the handshake.
			err = fmt.Errorf("connect to trojan server %s: %w", t.Server, err)
			t.observe(start, fw, nil, err)
			return nil, err
		}
		err = fmt.Errorf("tls handshake with %s: %w", t.Server, err)
		t.observe(start, fw, nil, err)
		return nil, err
	}
	t.observe(start, fw, conn, nil)
	return conn, nil
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
