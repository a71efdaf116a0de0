package client

import (
	"context"
	"net"

	"github.com/fastrojan/fastrojan/internal/pool"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// upstream returns a connection to the server, TLS done, for a new stream: a spare from the pool
// (pooled true) when Options.Pool is set, else a new one.
func (c *Client) upstream(ctx context.Context) (conn net.Conn, pooled bool, err error) {
	if c.opts.Pool == nil {
		tc, err := c.opts.Outbound.Handshake(ctx)
		if err != nil {
			return nil, false, err
		}
		return tc, false, nil
	}
	return c.opts.Pool.Get(ctx)
}

// request sends the CONNECT for dest with payload on up and returns the connection to relay over.
// On a spare, a failure before the server's first byte resends the stream once on a fresh
// connection (pool.Retry), so the payload is kept for that. On error up is closed.
func (c *Client) request(up net.Conn, pooled bool, dest trojan.Addr, payload []byte) (net.Conn, error) {
	send := func(conn net.Conn) error {
		return c.opts.Outbound.Request(conn, trojan.CmdConnect, dest, payload)
	}
	fresh := func() (net.Conn, error) {
		conn, err := c.opts.Outbound.Handshake(c.ctx)
		if err != nil {
			return nil, err
		}
		if err := send(conn); err != nil {
			_ = conn.Close()
			return nil, err
		}
		return conn, nil
	}
	if err := send(up); err != nil {
		_ = up.Close()
		if !pooled {
			return nil, err
		}
		c.opts.Pool.NoteRetry() // the spare broke under the request itself
		return fresh()
	}
	if !pooled {
		return up, nil
	}
	return pool.NewRetry(up, c.opts.Pool.RetryWindow(), fresh, c.opts.Pool.NoteRetry).WhenAnswered(c.opts.Pool.Answered), nil
}
