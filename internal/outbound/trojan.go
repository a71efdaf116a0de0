// Package outbound makes the connections that leave a fastrojan process: on the client, the Trojan
// connection to the server.
package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// Trojan dials a Trojan server: TCP, TLS, then the request header with the first payload in one
// write, which is one TLS record.
type Trojan struct {
	Server           string // host:port
	TLS              *tls.Config
	Hash             trojan.Hash
	HandshakeTimeout time.Duration // bounds TCP connect plus TLS handshake; default 10s
	// Dial opens the TCP connection; nil means a net.Dialer. The TFO issue plugs its dialer in here.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
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
	dial := t.Dial
	if dial == nil {
		d := &net.Dialer{}
		dial = d.DialContext
	}
	raw, err := dial(ctx, "tcp", t.Server)
	if err != nil {
		return nil, fmt.Errorf("dial trojan server %s: %w", t.Server, err)
	}
	conn := tls.Client(raw, t.TLS)
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no TLS handshake within %s: %w", timeout, err)
		}
		return nil, fmt.Errorf("tls handshake with %s: %w", t.Server, err)
	}
	return conn, nil
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
