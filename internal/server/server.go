// Package server is the Trojan server service: it accepts connections, completes TLS, authenticates
// the request header, relays valid CONNECT requests to their target, and hands everything else to
// the fallback web site with every byte already read replayed first, so that a prober sees only that
// site.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastrojan/fastrojan/internal/connset"
	"github.com/fastrojan/fastrojan/internal/users"
)

// Defaults for zero Options fields.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultRequestTimeout   = 10 * time.Second
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultDialTimeout      = 10 * time.Second
	DefaultMaxConns         = 4096
	DefaultSpareTimeout     = 60 * time.Second
)

// Options configure a Server. TLSConfig and Users are required.
type Options struct {
	TLSConfig *tls.Config
	Users     users.Store
	// Fallback is the host:port of the web server that gets everything that is not a valid request
	// (trojan-gfw's remote_addr:remote_port). Empty means such connections are just closed.
	Fallback string
	// FallbackByALPN sends a TLS client whose negotiated ALPN protocol is a key here to that
	// host:port instead of Fallback (trojan-gfw's ssl.alpn_port_override).
	FallbackByALPN map[string]string
	// PlainHTTPResponse, when set, is written raw to a connection whose first byte is not a TLS
	// handshake record, which is then closed (trojan-gfw's ssl.plain_http_response). When empty such
	// connections go to Fallback over plain TCP.
	PlainHTTPResponse []byte
	// TLSSite is the host:port of a real HTTPS server (for example nginx with the same certificate)
	// that gets, raw, every connection whose first byte is not a TLS handshake record, so that probers
	// get its answers byte for byte. Empty: such connections get nginx-like answers built in (decoy).
	TLSSite string
	// ServerToken names the server in the built-in answers to non-TLS input ("nginx/1.22.1"). Empty:
	// the fallback site's own Server header, read in the background, else "nginx".
	ServerToken string

	HandshakeTimeout time.Duration // accept to TLS handshake done; default 10s
	RequestTimeout   time.Duration // first byte after TLS to a complete request header; default 10s
	// SpareTimeout is how long a connection may stay silent after TLS before its first byte (a
	// client's spare connection, kept ready for its next stream); then it goes to the fallback with
	// nothing to replay. Default DefaultSpareTimeout, nginx's client_header_timeout.
	SpareTimeout time.Duration
	IdleTimeout  time.Duration // a relay with no traffic either way for this long ends; default 5m
	DialTimeout  time.Duration // connecting to a target or the fallback; default 10s
	// UDPTimeout ends a UDP association with no datagram either way for this long (trojan-gfw's
	// udp_timeout); default DefaultUDPTimeout.
	UDPTimeout time.Duration
	// Resolver looks up domain destinations of UDP datagrams. Default net.DefaultResolver.
	Resolver *net.Resolver
	// MaxConns bounds the connections handled at once (default 4096). Beyond it the server stops
	// accepting and new connections wait in the kernel's listen backlog.
	MaxConns int
	// MaxConnsPerIP bounds the connections one client address holds at once (default
	// DefaultMaxConnsPerIP). A connection beyond it is closed as soon as it is accepted.
	MaxConnsPerIP int
	// Dial connects to targets and to the fallback. Default: a net.Dialer.
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger // default slog.Default()
	// OnConn, if set, is called once per finished connection (from its handler goroutine), for metrics.
	OnConn func(ConnInfo)
	// MaxMuxStreams bounds the streams open at once in one trojan-go mux session; default
	// mux.DefaultMaxStreams.
	MaxMuxStreams int
	// DialFirst, if set, connects to targets for which the client sent a first payload, which is
	// written right after: a TCP Fast Open dialer (tfo.Dialer) puts it in the SYN. Targets without a
	// first payload use Dial, since a TFO connect would wait for a first write that never comes.
	DialFirst func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Stats are counters since New. Active is a gauge.
type Stats struct {
	Active        int64 // connections being handled now
	Accepted      int64 // connections accepted
	Authenticated int64 // requests with a known hash
	Fallbacks     int64 // connections relayed to the fallback
	PlainHTTP     int64 // non-TLS connections answered with PlainHTTPResponse
	Decoys        int64 // non-TLS connections answered as nginx would (built in)
	TLSSite       int64 // non-TLS connections relayed raw to TLSSite
	RefusedPerIP  int64 // connections closed at once: their address held MaxConnsPerIP already
	FullWaits     int64 // times the accept loop waited because MaxConns connections were being handled
	ClientIPs     int64 // client addresses holding connections now (a gauge)
	TLSFailures   int64 // TLS handshakes that failed or timed out
	MuxSessions   int64 // trojan-go mux sessions started
	MuxStreams    int64 // streams of mux sessions handled (SimpleSocks header read)
	MuxBadStreams int64 // streams closed for a bad SimpleSocks header or over MaxMuxStreams
	UDP           UDPStats
}

// UDPStats count UDP ASSOCIATE traffic. Payload bytes only (no framing).
type UDPStats struct {
	Associations  int64 // UDP associations started
	Active        int64 // associations open now
	DatagramsUp   int64 // datagrams from clients with a usable destination (a failed send also counts as Dropped)
	BytesUp       int64
	DatagramsDown int64 // datagrams from targets, framed to clients
	BytesDown     int64
	Dropped       int64 // datagrams too large, unresolvable or unsendable
	BadFrames     int64 // associations ended by a malformed frame
}

// Server is a Trojan server. Create it with New; run it with Serve; stop it with Shutdown or Close.
type Server struct {
	opts Options
	log  *slog.Logger

	ctx    context.Context // canceled by a forced close: aborts dials in progress
	cancel context.CancelFunc
	// draining is canceled when the shutdown begins: connections still silent after TLS end then.
	draining context.Context
	drain    context.CancelFunc
	slots    chan struct{} // one token per connection being handled (MaxConns)
	// set holds the listeners and the accepted connections still being handled; every connection
	// is busy from the start (it has its own handshake and request deadlines).
	set *connset.Set

	active, accepted, authenticated, fallbacks, plainHTTP, tlsFailures atomic.Int64
	decoys, tlsSite, refusedPerIP, fullWaits                           atomic.Int64
	muxSessions, muxStreams, muxBadStreams                             atomic.Int64
	perIP                                                              *ipLimiter
	udp                                                                udpStats

	token     atomic.Pointer[string] // the fallback site's Server header (token.go)
	tokenOnce sync.Once
	bg        sync.WaitGroup // background goroutines: the token learner
	handover  handover       // StopAccepting (handover.go)
}

// New checks opts, fills in defaults and returns a Server that is not serving yet.
func New(opts Options) (*Server, error) {
	if opts.TLSConfig == nil {
		return nil, errors.New("server: TLSConfig is required")
	}
	if opts.Users == nil {
		return nil, errors.New("server: Users is required")
	}
	for proto, addr := range opts.FallbackByALPN {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("server: fallback for ALPN %q: %w", proto, err)
		}
	}
	if opts.Fallback != "" {
		if _, _, err := net.SplitHostPort(opts.Fallback); err != nil {
			return nil, fmt.Errorf("server: fallback %q: %w", opts.Fallback, err)
		}
	}
	if opts.TLSSite != "" {
		if _, _, err := net.SplitHostPort(opts.TLSSite); err != nil {
			return nil, fmt.Errorf("server: tls_site %q: %w", opts.TLSSite, err)
		}
	}
	for _, d := range []*time.Duration{&opts.HandshakeTimeout, &opts.RequestTimeout, &opts.IdleTimeout, &opts.DialTimeout, &opts.SpareTimeout} {
		if *d < 0 {
			return nil, fmt.Errorf("server: negative timeout %v", *d)
		}
	}
	setDefault(&opts.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&opts.RequestTimeout, DefaultRequestTimeout)
	setDefault(&opts.IdleTimeout, DefaultIdleTimeout)
	setDefault(&opts.DialTimeout, DefaultDialTimeout)
	setDefault(&opts.SpareTimeout, DefaultSpareTimeout)
	if opts.UDPTimeout < 0 {
		return nil, fmt.Errorf("server: negative UDPTimeout %v", opts.UDPTimeout)
	}
	setDefault(&opts.UDPTimeout, DefaultUDPTimeout)
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.MaxConns < 0 {
		return nil, fmt.Errorf("server: negative MaxConns %d", opts.MaxConns)
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.MaxConnsPerIP < 0 {
		return nil, fmt.Errorf("server: negative MaxConnsPerIP %d", opts.MaxConnsPerIP)
	}
	if opts.MaxConnsPerIP == 0 {
		opts.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if opts.Dial == nil {
		var d net.Dialer
		opts.Dial = d.DialContext
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.PlainHTTPResponse = append([]byte(nil), opts.PlainHTTPResponse...)
	ctx, cancel := context.WithCancel(context.Background())
	draining, drain := context.WithCancel(ctx)
	return &Server{
		opts:     opts,
		log:      opts.Logger,
		ctx:      ctx,
		cancel:   cancel,
		draining: draining,
		drain:    drain,
		slots:    make(chan struct{}, opts.MaxConns),
		perIP:    newIPLimiter(opts.MaxConnsPerIP),
		set:      connset.New(),
	}, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Active:        s.active.Load(),
		Accepted:      s.accepted.Load(),
		Authenticated: s.authenticated.Load(),
		Fallbacks:     s.fallbacks.Load(),
		PlainHTTP:     s.plainHTTP.Load(),
		Decoys:        s.decoys.Load(),
		TLSSite:       s.tlsSite.Load(),
		RefusedPerIP:  s.refusedPerIP.Load(),
		FullWaits:     s.fullWaits.Load(),
		ClientIPs:     int64(s.perIP.addresses()),
		TLSFailures:   s.tlsFailures.Load(),
		MuxSessions:   s.muxSessions.Load(),
		MuxStreams:    s.muxStreams.Load(),
		MuxBadStreams: s.muxBadStreams.Load(),
		UDP: UDPStats{
			Associations:  s.udp.associations.Load(),
			Active:        s.udp.active.Load(),
			DatagramsUp:   s.udp.datagramsUp.Load(),
			BytesUp:       s.udp.bytesUp.Load(),
			DatagramsDown: s.udp.datagramsDown.Load(),
			BytesDown:     s.udp.bytesDn.Load(),
			Dropped:       s.udp.dropped.Load(),
			BadFrames:     s.udp.badFrames.Load(),
		},
	}
}

// Serve accepts connections on ln and handles each in its own goroutine until Shutdown or Close,
// after which it returns nil; it returns an error if ln fails otherwise. The server owns ln from now
// on and closes it. Serve may be called for several listeners at once.
func (s *Server) Serve(ln net.Listener) error {
	if !s.set.AddListener(ln) {
		return nil
	}
	s.startTokenLearner()
	s.handover.loops.Add(1)
	accepting := true
	stopAccepting := func() { // StopAccepting (handover.go) waits for this
		if accepting {
			accepting = false
			s.handover.loops.Done()
		}
	}
	defer func() {
		stopAccepting()
		s.set.RemoveListener(ln)
		_ = ln.Close()
	}()
	handedOver := func() error { // stopped accepting for an upgrade: serve on until the shutdown
		stopAccepting()
		<-s.set.Done()
		return nil
	}

	var backoff connset.Backoff
	for {
		select {
		case s.slots <- struct{}{}: // wait for a free slot before accepting: MaxConns
		default:
			s.fullWaits.Add(1)
			select {
			case s.slots <- struct{}{}:
			case <-s.set.Done():
				return nil
			case <-s.handover.stopped():
				return handedOver()
			}
		}
		c, err := ln.Accept()
		if err != nil {
			<-s.slots
			if s.set.Closing() {
				return nil
			}
			select {
			case <-s.handover.stopped():
				return handedOver()
			default:
			}
			wait, retry := backoff.Next(err)
			if !retry {
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			s.log.Warn("accept failed, retrying", "listener", ln.Addr().String(), "err", err, "retry_in", wait)
			if !s.set.Sleep(wait) {
				return nil
			}
			continue
		}
		backoff.Reset()
		s.accepted.Add(1)
		if !s.perIP.acquire(c) { // MaxConnsPerIP (limits.go)
			s.refusedPerIP.Add(1)
			_ = c.Close()
			<-s.slots
			continue
		}
		if !s.set.Add(c, true) {
			s.perIP.release(c)
			_ = c.Close()
			<-s.slots
			return nil
		}
		go s.handle(c)
	}
}

// Shutdown stops accepting and waits for the connections being handled to end. When ctx is done
// first it closes those still open, waits for their handlers to return and reports ctx.Err(). Calling
// it again, or after Close, is safe.
func (s *Server) Shutdown(ctx context.Context) error {
	s.set.BeginShutdown()
	s.drain()
	stop := context.AfterFunc(ctx, s.cancel) // past the bound, dials in progress are aborted too
	defer stop()
	err := s.set.Wait(ctx)
	s.cancel()
	s.bg.Wait()
	return err
}

// Close stops accepting, closes every connection and aborts every dial at once, and waits for their
// handlers to return.
func (s *Server) Close() error {
	s.cancel()
	s.set.CloseAll()
	err := s.set.Wait(context.Background())
	s.bg.Wait()
	return err
}
