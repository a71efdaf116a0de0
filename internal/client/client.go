// Package client is the client service: it accepts application connections on an inbound (SOCKS5
// and HTTP proxy on one port, forward, or nat), opens a Trojan connection to the server for each,
// and relays. UDP (SOCKS5 UDP ASSOCIATE, forward, nat) goes through one Trojan UDP ASSOCIATE
// connection per association or source address (udp.go).
package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastrojan/fastrojan/internal/connset"
	"github.com/fastrojan/fastrojan/internal/inbound"
	"github.com/fastrojan/fastrojan/internal/mux"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/pool"
	"github.com/fastrojan/fastrojan/internal/relay"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// Options configure a Client.
type Options struct {
	Outbound *outbound.Trojan // required
	// Pool, if set, holds spare connections to the server for new TCP streams (package pool);
	// Shutdown and Close close it.
	Pool *pool.Pool
	// Mux, if set, carries every TCP stream as a stream of a trojan-go mux session (package mux)
	// instead of a connection of its own; Shutdown and Close close it.
	Mux *mux.Client
	// FirstPayloadWait bounds how long the client waits, after answering the application, for its
	// first bytes to send together with the Trojan header. Default 100ms.
	FirstPayloadWait time.Duration
	// InboundTimeout bounds the SOCKS5 negotiation. Default 10s.
	InboundTimeout time.Duration
	// IdleTimeout ends a relay with no traffic in either direction. Default 5m.
	IdleTimeout time.Duration
	// UDPTimeout ends a UDP association or session with no datagram either way for this long
	// (trojan-gfw's udp_timeout). Default 60s.
	UDPTimeout time.Duration
	Logger     *slog.Logger
	// OnTunnelClosed, if set, is called when a TCP tunnel ends with the bytes sent towards the server
	// (the first payload included) and received from it, for metrics.
	OnTunnelClosed func(sent, received int64)
}

// Stats are counters for tests and metrics.
type Stats struct {
	Accepted, Active, Failed int64
	UDP                      UDPStats
}

// Client serves one inbound listener.
type Client struct {
	opts Options
	log  *slog.Logger

	ctx    context.Context // cancelled by Close: aborts dials in flight
	cancel context.CancelFunc

	// set holds every listener being served (SOCKS5, forward, nat) and every application
	// connection; a connection is busy once its tunnel is open.
	set      *connset.Set
	accepted atomic.Int64
	active   atomic.Int64
	failed   atomic.Int64
	udp      udpState
	// abandoned counts the goroutines that close dials no connection waits for any more.
	abandoned sync.WaitGroup
}

// New checks opts and returns a Client.
func New(opts Options) (*Client, error) {
	if opts.Outbound == nil {
		return nil, errors.New("client: no outbound")
	}
	if opts.FirstPayloadWait <= 0 {
		opts.FirstPayloadWait = 100 * time.Millisecond
	}
	if opts.InboundTimeout <= 0 {
		opts.InboundTimeout = 10 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 5 * time.Minute
	}
	if opts.UDPTimeout <= 0 {
		opts.UDPTimeout = 60 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{opts: opts, log: opts.Logger, ctx: ctx, cancel: cancel, set: connset.New()}
	c.udp.init()
	return c, nil
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	return Stats{Accepted: c.accepted.Load(), Active: c.active.Load(), Failed: c.failed.Load(), UDP: c.udp.stats()}
}

// Serve accepts on ln until Shutdown or Close; it returns nil then. Each connection speaks SOCKS5
// (CONNECT and UDP ASSOCIATE) or, when its first byte is not SOCKS5's version 5, HTTP proxy.
func (c *Client) Serve(ln net.Listener) error { return c.acceptLoop(ln, c.handle) }

// acceptLoop accepts on ln and runs handle for each connection in its own goroutine.
func (c *Client) acceptLoop(ln net.Listener, handle func(net.Conn)) error {
	if !c.set.AddListener(ln) {
		return nil
	}
	defer c.set.RemoveListener(ln)
	var backoff connset.Backoff
	for {
		conn, err := ln.Accept()
		if err != nil {
			if c.set.Closing() {
				return nil
			}
			wait, retry := backoff.Next(err)
			if !retry {
				return fmt.Errorf("client accept on %s: %w", ln.Addr(), err)
			}
			c.log.Warn("accept failed, retrying", "listener", ln.Addr().String(), "err", err, "retry_in", wait)
			if !c.set.Sleep(wait) {
				return nil
			}
			continue
		}
		backoff.Reset()
		if !c.track(conn) {
			_ = conn.Close()
			continue
		}
		c.accepted.Add(1)
		go handle(conn)
	}
}

func (c *Client) track(conn net.Conn) bool {
	if !c.set.Add(conn, false) {
		return false
	}
	c.active.Add(1)
	return true
}

// markRelaying records that conn's tunnel is open, so Shutdown lets it finish; false if shutting down.
func (c *Client) markRelaying(conn net.Conn) bool { return c.set.SetBusy(conn) }

func (c *Client) untrack(conn net.Conn) {
	c.active.Add(-1)
	c.set.Remove(conn)
}

// Shutdown stops accepting, closes connections still negotiating with their application, waits for
// open tunnels until ctx is done, then closes them; it returns once every goroutine of the client
// has. Calling it again, or after Close, is safe.
func (c *Client) Shutdown(ctx context.Context) error {
	c.set.BeginShutdown()
	c.cancel() // dials in flight belong to connections just closed as not yet relaying
	_ = c.opts.Pool.Close()
	_ = c.opts.Mux.Close()
	c.udp.closeAll() // datagrams have no graceful end: UDP sessions stop now
	err := c.set.Wait(ctx)
	c.abandoned.Wait()
	if err != nil {
		return fmt.Errorf("client shutdown: %w", err)
	}
	return nil
}

// Close stops at once: the listener, dials in flight and every connection; it returns once every
// goroutine of the client has. It is idempotent.
func (c *Client) Close() error {
	c.set.CloseAll()
	c.cancel()
	_ = c.opts.Pool.Close()
	_ = c.opts.Mux.Close()
	c.udp.closeAll()
	_ = c.set.Wait(context.Background())
	c.abandoned.Wait()
	return nil
}

type dialResult struct {
	conn   net.Conn
	pooled bool // a spare from the pool
	err    error
}

func (c *Client) handle(app net.Conn) {
	defer c.untrack(app)
	defer app.Close()
	start := time.Now()
	log := c.log.With("from", app.RemoteAddr().String())

	_ = app.SetDeadline(start.Add(c.opts.InboundTimeout))
	br := bufio.NewReaderSize(app, 512)
	first, err := br.Peek(1)
	if err != nil {
		c.failed.Add(1)
		log.Debug("inbound closed before a request", "err", err)
		return
	}
	if first[0] != socks5Version {
		c.handleHTTP(app, br, start, log)
		return
	}
	req, err := inbound.ReadSocks5(br, app)
	if err != nil {
		c.failed.Add(1)
		log.Debug("inbound rejected", "err", err)
		return
	}
	if req.Cmd == inbound.CmdUDPAssociate {
		c.socksUDP(app, br, req, log)
		return
	}
	log = log.With("dest", req.Dest.String())
	// Answer success before the upstream is ready (as trojan-gfw does) so the application speaks.
	answer := func() error { return inbound.WriteSocks5Reply(app, inbound.RepSucceeded, netip.AddrPort{}) }
	_ = c.tunnel(app, br, req.Dest, nil, answer, start, log)
}

// socks5Version is the first byte of every SOCKS5 greeting; anything else is taken for HTTP.
const socks5Version = 0x05

// tunnel opens a Trojan CONNECT to dest for app and relays until both sides are done. answer, when
// set, tells the application to go ahead (it runs while the Trojan handshake is in flight). head,
// when set, is sent first, in place of waiting for the application's first bytes. It returns an
// error, already counted and logged, only when the tunnel could not be opened.
func (c *Client) tunnel(app net.Conn, br *bufio.Reader, dest trojan.Addr, head []byte, answer func() error, start time.Time, log *slog.Logger) error {
	if c.opts.Mux != nil {
		return c.tunnelMux(app, br, dest, head, answer, start, log)
	}
	// Start the Trojan connection at once, in parallel with answering the application and
	// reading its first bytes: the TLS handshake is the long pole.
	dialCh := make(chan dialResult, 1)
	if spare := c.opts.Pool.TryGet(); spare != nil {
		dialCh <- dialResult{spare, true, nil} // a ready spare: no handshake to wait for
	} else {
		go func() {
			conn, pooled, err := c.upstream(c.ctx)
			dialCh <- dialResult{conn, pooled, err}
		}()
		// Let the dial run first: its SYN (with the ClientHello) starts the round trip everything
		// waits for, while the answer to the application and its first bytes are loopback work the
		// handshake leaves ample time for. Without this the dial waited for another thread to wake
		// or for this goroutine to block: on a 2-core VM it began a median 150 µs after the SOCKS5
		// request was read, 85 µs with it.
		runtime.Gosched()
	}

	if answer != nil {
		if err := answer(); err != nil {
			c.failed.Add(1)
			c.closeDial(dialCh)
			log.Debug("inbound reply", "err", err)
			return err
		}
	}
	var payload []byte
	if head != nil {
		payload = append(head, c.buffered(br, outbound.MaxFirstPayload-len(head))...)
	} else {
		payload = c.firstPayload(br, app)
	}

	res := <-dialCh
	if res.err != nil {
		c.failed.Add(1)
		log.Warn("connect via trojan server failed", "err", res.err)
		return res.err
	}
	// Count the tunnel as open before the request leaves: once the server may act on it, Shutdown
	// lets it finish rather than cutting it.
	if !c.markRelaying(app) {
		_ = res.conn.Close()
		return nil // Shutdown began while this tunnel was being set up
	}
	var up net.Conn
	// On a goroutine of its own: what the request costs the stack is not kept by the relay below.
	err := relay.OnFreshStack(func() (err error) { up, err = c.request(res.conn, res.pooled, dest, payload); return err })
	if err != nil {
		c.failed.Add(1)
		log.Warn("trojan request failed", "err", err)
		return err
	}
	defer up.Close()
	log.Debug("tunnel open", "setup", time.Since(start).Round(time.Microsecond), "first_payload", len(payload), "pooled", res.pooled)
	c.relayTunnel(app, br, up, len(payload), start, log)
	return nil
}

// buffered returns up to max bytes the application already sent, without waiting for more.
func (c *Client) buffered(br *bufio.Reader, max int) []byte {
	n := min(br.Buffered(), max)
	if n <= 0 {
		return nil
	}
	b, _ := br.Peek(n)
	out := append([]byte(nil), b...)
	_, _ = br.Discard(n)
	return out
}

// firstPayload waits up to FirstPayloadWait for the application's first bytes and returns what one
// read brings (bounded by one TLS record's worth).
func (c *Client) firstPayload(br *bufio.Reader, app net.Conn) []byte {
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		out := append([]byte(nil), b...)
		_, _ = br.Discard(n)
		return out
	}
	_ = app.SetReadDeadline(time.Now().Add(c.opts.FirstPayloadWait))
	bp := payloadBufs.Get().(*[]byte)
	defer payloadBufs.Put(bp)
	n, _ := app.Read(*bp) // a timeout or EOF here just means no first payload
	_ = app.SetReadDeadline(time.Time{})
	// A copy of its own size: the payload lives as long as the tunnel (a pooled stream keeps it for
	// a resend), and a tunnel should not hold a 16 KiB buffer for a 300-byte request.
	return append([]byte(nil), (*bp)[:n]...)
}

// payloadBufs holds the buffers firstPayload reads into.
var payloadBufs = sync.Pool{New: func() any { b := make([]byte, outbound.MaxFirstPayload); return &b }}

// closeDial closes the connection of a dial whose application went away, once the dial returns; the
// goroutine that waits for it is the client's (Shutdown and Close wait for it).
func (c *Client) closeDial(ch chan dialResult) {
	c.abandoned.Add(1)
	go func() {
		defer c.abandoned.Done()
		if r := <-ch; r.conn != nil {
			_ = r.conn.Close()
		}
	}()
}

// bufferedConn reads through the bufio.Reader used for the SOCKS5 negotiation so that nothing the
// application sent early is lost.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) {
	if b.r.Buffered() > 0 {
		return b.r.Read(p)
	}
	return b.Conn.Read(p)
}

// CloseWrite half-closes the application side when the server is done sending.
func (b *bufferedConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// relayTunnel relays between app and up, whose request (with the first payload, sentFirst bytes)
// went out, until both are done. It takes the payload's length only: an idle tunnel keeps no copy of
// what it sent first (a browser's ClientHello, 0.5-2 KB).
func (c *Client) relayTunnel(app net.Conn, br *bufio.Reader, up net.Conn, sentFirst int, start time.Time, log *slog.Logger) {
	_ = app.SetDeadline(time.Time{})
	// Read through the bufio.Reader only while it holds something: the bare socket lets the relay
	// wait for the application without holding a buffer.
	var appSide net.Conn = app
	if br.Buffered() > 0 {
		appSide = &bufferedConn{Conn: app, r: br}
	}
	sent, received, err := relay.Pipe(appSide, up, c.opts.IdleTimeout)
	if c.opts.OnTunnelClosed != nil {
		c.opts.OnTunnelClosed(sent+int64(sentFirst), received)
	}
	log.Debug("tunnel closed", "sent", sent+int64(sentFirst), "received", received, "err", err, "duration", time.Since(start).Round(time.Millisecond))
}
