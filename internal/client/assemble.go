package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/inbound"
	"github.com/fastrojan/fastrojan/internal/metrics"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/service"
	"github.com/fastrojan/fastrojan/internal/tcpopt"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tfo/pathstate"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// Env is what a client built from a config logs to and reports to.
type Env struct {
	Log     *slog.Logger     // required
	Metrics *metrics.Metrics // nil: no metrics
	// OnHandshake, if set, sees every handshake with the server (the demo prints them).
	OnHandshake func(outbound.HandshakeInfo)
	// Do, if set, runs fn where the client's sockets to the server must be made (a netlab host's
	// Do, for the lab and its tests); nil makes them here.
	Do func(fn func() error) error
}

// Assembly is a client built from a config (run_type client, forward or nat): the client, its TCP
// listener and, for forward and nat, its UDP socket. Parts returns them in start order for
// service.Run; Close releases them when they never run.
type Assembly struct {
	Client   *Client
	Listener net.Listener
	udp      net.PacketConn // forward, nat: nil when there is none
	parts    []service.Part
}

// FromConfig builds the client a config describes and opens its listeners. Every Trojan connection
// it makes goes through one outbound: TCP Fast Open with key shares that fit the SYN and per-server
// path memory when fastrojan.tfo.client is on, trojan-gfw's tcp.* options on every socket.
func FromConfig(cfg *config.Config, env Env) (_ *Assembly, err error) {
	var target trojan.Addr
	switch cfg.RunType {
	case config.RunClient:
	case "forward":
		if target, err = trojan.ParseAddrString(cfg.TargetHostPort()); err != nil {
			return nil, fmt.Errorf("%s: $.target_addr/$.target_port: %w", cfg.Path, err)
		}
	case "nat":
		if !inbound.NATSupported {
			return nil, fmt.Errorf("run_type nat needs Linux (netfilter REDIRECT and TPROXY): %w", errors.ErrUnsupported)
		}
	default:
		return nil, fmt.Errorf("client: run_type %q", cfg.RunType)
	}
	ob, err := OutboundFromConfig(cfg, env)
	if err != nil {
		return nil, err
	}
	ext := cfg.Fastrojan
	spares, mc := poolFromConfig(cfg, ob, env.Log, env.Metrics), muxFromConfig(cfg, ob, env.Log, env.Metrics)
	cl, err := New(Options{
		Outbound:         ob,
		Pool:             spares,
		Mux:              mc,
		OnTunnelClosed:   tunnelMetrics(env.Metrics),
		FirstPayloadWait: time.Duration(ext.FirstPayloadWait),
		IdleTimeout:      time.Duration(ext.IdleTimeout),
		UDPTimeout:       time.Duration(cfg.UDPTimeout) * time.Second,
		Logger:           env.Log,
	})
	if err != nil {
		_, _ = spares.Close(), mc.Close() // nil-safe
		return nil, err
	}
	cl.registerMetrics(env.Metrics)
	ln, err := tcpopt.Listen(cfg.TCP, cfg.LocalHostPort())
	if err != nil {
		_ = cl.Close()
		return nil, err
	}
	a := &Assembly{Client: cl, Listener: ln, parts: []service.Part{{Name: "client", Stop: cl.Shutdown}}}
	switch cfg.RunType {
	case "forward":
		err = a.forward(cfg, env.Log, target)
	case "nat":
		a.nat(cfg, env.Log)
	default:
		a.parts = append(a.parts, service.Part{Name: "socks5", Run: func() error { return cl.Serve(ln) }})
		env.Log.Info("client listening (SOCKS5)", "addr", ln.Addr().String(), "server", cfg.RemoteHostPort())
	}
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// forward serves TCP and UDP on the listener's address, all to target.
func (a *Assembly) forward(cfg *config.Config, log *slog.Logger, target trojan.Addr) error {
	cl, ln := a.Client, a.Listener
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(tcpAddrPort(ln)))
	if err != nil {
		return fmt.Errorf("listen udp %s: %w", cfg.LocalHostPort(), err)
	}
	a.udp = pc
	a.parts = append(a.parts,
		service.Part{Name: "forward tcp", Run: func() error { return cl.ServeForward(ln, target) }},
		service.Part{Name: "forward udp", Run: func() error { return cl.ServeUDPForward(pc, target) }})
	log.Info("client listening (forward, TCP and UDP)", "addr", ln.Addr().String(), "target", target.String(), "server", cfg.RemoteHostPort())
	return nil
}

// nat is a transparent proxy for connections nftables redirects to the listener (original
// destination from SO_ORIGINAL_DST), and for UDP that nftables' tproxy sends to the same port.
func (a *Assembly) nat(cfg *config.Config, log *slog.Logger) {
	cl, ln := a.Client, a.Listener
	a.parts = append(a.parts, service.Part{Name: "nat tcp", Run: func() error { return cl.ServeNAT(ln) }})
	pc, err := inbound.ListenTProxyUDP(tcpAddrPort(ln).String())
	if err != nil {
		// TCP still works without it; say what UDP needs.
		log.Warn("nat: UDP transparent proxy unavailable, TCP only", "err", err)
	} else {
		a.udp = pc
		a.parts = append(a.parts, service.Part{Name: "nat udp", Run: func() error { return cl.ServeTProxyUDP(pc) }})
	}
	log.Info("client listening (nat)", "addr", ln.Addr().String(), "udp", pc != nil, "server", cfg.RemoteHostPort())
}

func tcpAddrPort(ln net.Listener) netip.AddrPort { return ln.Addr().(*net.TCPAddr).AddrPort() }

// Parts are the client and what it serves, in start order.
func (a *Assembly) Parts() []service.Part { return a.parts }

// Close releases what FromConfig built, for when it is not run (Run stops the parts instead).
func (a *Assembly) Close() {
	_ = a.Listener.Close()
	if a.udp != nil {
		_ = a.udp.Close()
	}
	_ = a.Client.Close()
}

// OutboundFromConfig is the client's dialer to the server a config names: TLS (with TCP Fast Open,
// key shares that fit in the SYN unless ssl.curves says otherwise, its size measured and logged),
// the TFO and plain dials with the tcp.* options, the per-server TFO path memory, and the
// handshake's report to logs and metrics.
func OutboundFromConfig(cfg *config.Config, env Env) (*outbound.Trojan, error) {
	tlsCfg, err := tlsFromConfig(cfg, env.Log)
	if err != nil {
		return nil, err
	}
	ob := &outbound.Trojan{
		Server:           cfg.RemoteHostPort(),
		TLS:              tlsCfg,
		Hash:             trojan.HashPassword(cfg.Password[0]),
		HandshakeTimeout: time.Duration(cfg.Fastrojan.HandshakeTimeout),
		DialTFO:          dialTFOFromConfig(cfg, env.Log),
		DialPlain:        tcpopt.PlainDial(cfg.TCP),
		Observe:          observer(cfg, env),
		Paths:            pathsFromConfig(cfg, env),
		PreferIPv4:       cfg.TCP.PreferIPv4,
	}
	if env.Do != nil {
		if ob.DialTFO != nil {
			ob.DialTFO = dialIn(env.Do, ob.DialTFO)
		}
		if ob.DialPlain == nil {
			ob.DialPlain = (&net.Dialer{}).DialContext
		}
		ob.DialPlain = dialIn(env.Do, ob.DialPlain)
	}
	return ob, nil
}

// dialIn is dial made inside do.
func dialIn(do func(func() error) error, dial tcpopt.DialFunc) tcpopt.DialFunc {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = do(func() error { c, err = dial(ctx, network, addr); return err })
		return c, err
	}
}

// tlsFromConfig builds the client's TLS config. With TCP Fast Open towards the server it picks key
// shares that fit in the SYN (unless ssl.curves says otherwise) and logs how large the ClientHello
// is and whether it fits.
func tlsFromConfig(cfg *config.Config, log *slog.Logger) (*tls.Config, error) {
	if !cfg.TFOClient() {
		return tlsconf.Client(cfg.SSL, cfg.RemoteAddr, log)
	}
	tc, err := tlsconf.ClientTFO(cfg.SSL, cfg.RemoteAddr, log)
	if err != nil {
		return nil, err
	}
	if _, err := tlsconf.CheckClientHello(tc, cfg.SSL, tfo.MaxSYNData(cfg.RemoteAddr), log); err != nil {
		log.Warn("could not measure the TLS ClientHello", "err", err)
	}
	return tc, nil
}

// dialTFOFromConfig is the client's dial to the server with TCP Fast Open when fastrojan.tfo.client
// (default tcp.fast_open) is on, so the ClientHello rides in the SYN; nil otherwise.
func dialTFOFromConfig(cfg *config.Config, log *slog.Logger) tcpopt.DialFunc {
	if !cfg.TFOClient() {
		return nil
	}
	d := &tfo.Dialer{Dialer: tcpopt.Dialer(cfg.TCP), Logger: log}
	return tcpopt.WithDialOptions(cfg.TCP, d.DialContext)
}

// pathsFromConfig is the client's per-server TCP Fast Open memory (README "Hostile paths") when it
// dials the server with TFO, nil otherwise. Its state is exported as metrics; each change is one
// log line.
func pathsFromConfig(cfg *config.Config, env Env) *pathstate.Table {
	if !cfg.TFOClient() {
		return nil
	}
	paths := pathstate.New(pathstate.Options{Logger: env.Log})
	if err := env.Metrics.Register(metrics.NewTFOPathCollector(paths)); err != nil {
		env.Log.Warn("TFO path metrics unavailable", "err", err)
	}
	return paths
}

// observer logs each handshake with the server at debug level with its TFO outcome, reports it to
// metrics, and says once how large the first resumed ClientHello was and whether it fits the SYN.
func observer(cfg *config.Config, env Env) func(outbound.HandshakeInfo) {
	m, log := env.Metrics, env.Log
	limit := tfo.MaxSYNData(cfg.RemoteAddr)
	useTFO := cfg.TFOClient()
	var resumedOnce sync.Once
	return func(h outbound.HandshakeInfo) {
		if h.Err != nil {
			m.Conn(metrics.RoleClient, "failed")
		} else {
			m.Conn(metrics.RoleClient, "ok")
			m.Handshake(metrics.RoleClient, h.Duration)
			m.ClientHello(h.HelloBytes, h.Resumed)
			m.Resumed(metrics.RoleClient, h.Resumed)
		}
		m.TFO(metrics.LegClient, h.TFO)
		log.Debug("trojan handshake", "server", h.Server, "tfo", h.TFO.String(), "hello_bytes", h.HelloBytes,
			"resumed", h.Resumed, "raced", h.Raced, "duration", h.Duration, "err", h.Err)
		if useTFO && h.Resumed {
			resumedOnce.Do(func() {
				if h.HelloBytes <= limit {
					log.Info("resumed TLS ClientHello fits in the TFO SYN", "bytes", h.HelloBytes, "limit", limit)
				} else {
					log.Warn("resumed TLS ClientHello does not fit in the TFO SYN: TCP Fast Open saves no round trip on resumed sessions",
						"bytes", h.HelloBytes, "limit", limit, "fix", "put X25519 first in ssl.curves or set ssl.reuse_session false")
				}
			})
		}
		if env.OnHandshake != nil {
			env.OnHandshake(h)
		}
	}
}

// tunnelMetrics reports the bytes of each finished client tunnel to m; nil without metrics.
func tunnelMetrics(m *metrics.Metrics) func(sent, received int64) {
	if m == nil {
		return nil
	}
	return func(sent, received int64) { m.Bytes(metrics.RoleClient, sent, received) }
}

// registerMetrics exports the client's live gauge and UDP counters (SOCKS5 UDP ASSOCIATE, forward
// and nat) to m.
func (c *Client) registerMetrics(m *metrics.Metrics) {
	_ = m.GaugeFunc("fastrojan_client_connections_active", "Client connections (application side) being handled now.",
		func() float64 { return float64(c.Stats().Active) })
	m.RegisterUDP(metrics.RoleClient, func() metrics.UDP {
		u := c.Stats().UDP
		return metrics.UDP{Sessions: u.Sessions, Active: u.Active, DatagramsUp: u.DatagramsUp, DatagramsDown: u.DatagramsDown,
			BytesUp: u.BytesUp, BytesDown: u.BytesDown, Dropped: u.Dropped}
	})
}
