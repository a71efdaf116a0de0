package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/fastrojan/fastrojan/internal/client"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/metrics"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/server"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
)

// telemetry is where a built service reports: metrics (nil: none) and, for the demo, every client
// handshake.
type telemetry struct {
	metrics     *metrics.Metrics
	onHandshake func(outbound.HandshakeInfo)
}

// telemetryOf returns the first non-nil telemetry, or an empty one.
func telemetryOf(ts []*telemetry) *telemetry {
	for _, t := range ts {
		if t != nil {
			return t
		}
	}
	return &telemetry{}
}

// startMetrics serves /metrics on fastrojan.metrics_listen when it is set. stop ends the endpoint.
func startMetrics(cfg *config.Config, log *slog.Logger) (t *telemetry, stop func(), err error) {
	addr := cfg.Fastrojan.MetricsListen
	if addr == "" {
		return &telemetry{}, func() {}, nil
	}
	m := metrics.New()
	ep, err := m.Listen(addr, log)
	if err != nil {
		return nil, nil, err
	}
	log.Info("metrics endpoint listening", "url", "http://"+ep.Addr().String()+"/metrics")
	return &telemetry{metrics: m}, func() { _ = ep.Close() }, nil
}

// serverListen opens the server's listener: with TCP Fast Open (tcp.fast_open_qlen) when
// fastrojan.tfo.server_listen (default tcp.fast_open) is on; MPTCP is off either way.
func serverListen(cfg *config.Config, log *slog.Logger) (net.Listener, error) {
	if !cfg.TFOServerListen() {
		return listen(cfg.TCP, cfg.LocalHostPort())
	}
	tl, err := tfo.ListenConfig(listenConfig(cfg.TCP)).Listen(context.Background(), "tcp", cfg.LocalHostPort(), cfg.TCP.FastOpenQLen, log)
	if err != nil {
		return nil, err
	}
	ln := withTCPOptions(cfg.TCP, tl)
	qlen := cfg.TCP.FastOpenQLen
	if qlen < 1 {
		qlen = tfo.DefaultQueueLen
	}
	log.Info("TCP Fast Open on the listener", "qlen", qlen)
	return ln, nil
}

// serverDialFirst is the server's dial to targets that get a first payload, which then rides in the
// SYN (fastrojan.tfo.server_dial, default tcp.fast_open); nil means the ordinary dial.
func serverDialFirst(cfg *config.Config, log *slog.Logger) func(context.Context, string, string) (net.Conn, error) {
	if !cfg.TFOServerDial() {
		return nil
	}
	d := &tfo.Dialer{Dialer: baseDialer(cfg.TCP), Logger: log}
	return withTCPDialOptions(cfg.TCP, d.DialContext)
}

// serverOnConn reports each finished server connection to metrics.
func (t *telemetry) serverOnConn() func(server.ConnInfo) {
	m := t.metrics
	if m == nil {
		return nil
	}
	return func(ci server.ConnInfo) {
		m.Conn(metrics.RoleServer, ci.Outcome)
		m.Bytes(metrics.RoleServer, ci.Up, ci.Down)
		if !ci.MuxStream { // a mux stream has no TCP connection of its own
			m.TFO(metrics.LegServerAccept, ci.TFOAccept)
		}
		if ci.Dialed {
			m.TFO(metrics.LegServerDial, ci.TFODial)
		}
		if ci.Handshake > 0 {
			m.Handshake(metrics.RoleServer, ci.Handshake)
		}
	}
}

// registerServer exports the server's live gauges.
func (t *telemetry) registerServer(srv *server.Server) {
	_ = t.metrics.GaugeFunc("fastrojan_server_connections_active", "Server connections being handled now.",
		func() float64 { return float64(srv.Stats().Active) })
}

// clientTLS builds the client's TLS config. With TCP Fast Open towards the server it picks key shares
// that fit in the SYN (unless ssl.curves says otherwise) and logs how large the ClientHello is and
// whether it fits.
func clientTLS(cfg *config.Config, log *slog.Logger) (*tls.Config, error) {
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

// clientDial is the client's dial to the server: TCP Fast Open when fastrojan.tfo.client (default
// tcp.fast_open) is on, so the ClientHello rides in the SYN; nil means the ordinary dial.
func clientDial(cfg *config.Config, log *slog.Logger) func(context.Context, string, string) (net.Conn, error) {
	if !cfg.TFOClient() {
		return plainDial(cfg.TCP)
	}
	d := &tfo.Dialer{Dialer: baseDialer(cfg.TCP), Logger: log}
	return withTCPDialOptions(cfg.TCP, d.DialContext)
}

// clientObserver logs each handshake with the server at debug level with its TFO outcome, reports it
// to metrics, and says once how large the first resumed ClientHello was and whether it fits the SYN.
func (t *telemetry) clientObserver(cfg *config.Config, log *slog.Logger) func(outbound.HandshakeInfo) {
	limit := tfo.MaxSYNData(cfg.RemoteAddr)
	useTFO := cfg.TFOClient()
	var resumedOnce sync.Once
	return func(h outbound.HandshakeInfo) {
		if h.Err != nil {
			t.metrics.Conn(metrics.RoleClient, "failed")
		} else {
			t.metrics.Conn(metrics.RoleClient, "ok")
			t.metrics.Handshake(metrics.RoleClient, h.Duration)
			t.metrics.ClientHello(h.HelloBytes, h.Resumed)
		}
		t.metrics.TFO(metrics.LegClient, h.TFO)
		log.Debug("trojan handshake", "server", h.Server, "tfo", h.TFO.String(), "hello_bytes", h.HelloBytes,
			"resumed", h.Resumed, "raced", h.Raced, "duration", h.Duration, "err", h.Err)
		if useTFO && h.Resumed {
			resumedOnce.Do(func() {
				if h.HelloBytes <= limit {
					log.Info("resumed TLS ClientHello fits in the TFO SYN", "bytes", h.HelloBytes, "limit", limit)
				} else {
					log.Warn("resumed TLS ClientHello does not fit in the TFO SYN: TCP Fast Open saves no round trip on resumed sessions",
						"bytes", h.HelloBytes, "limit", limit, "fix", fmt.Sprintf("put X25519 first in ssl.curves or set ssl.reuse_session false"))
				}
			})
		}
		if t.onHandshake != nil {
			t.onHandshake(h)
		}
	}
}

// clientTunnelClosed reports the bytes of each finished client tunnel to metrics.
func (t *telemetry) clientTunnelClosed() func(sent, received int64) {
	m := t.metrics
	if m == nil {
		return nil
	}
	return func(sent, received int64) { m.Bytes(metrics.RoleClient, sent, received) }
}

// registerClient exports the client's live gauges.
func (t *telemetry) registerClient(cl *client.Client) {
	_ = t.metrics.GaugeFunc("fastrojan_client_connections_active", "Client connections (application side) being handled now.",
		func() float64 { return float64(cl.Stats().Active) })
}
