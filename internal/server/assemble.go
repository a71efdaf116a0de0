package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fastrojan/fastrojan/internal/acme"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/handoff"
	"github.com/fastrojan/fastrojan/internal/metrics"
	"github.com/fastrojan/fastrojan/internal/service"
	"github.com/fastrojan/fastrojan/internal/tcpopt"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/users"
)

// Env is what a server built from a config logs to and reports to.
type Env struct {
	Log     *slog.Logger     // required
	Metrics *metrics.Metrics // nil: no metrics
	// Users, if set, is the user store; nil builds it from the config (passwords, MySQL, SQLite).
	Users users.Store
	// StateDir holds what the server keeps between runs: ACME certificates go to StateDir/acme
	// unless fastrojan.acme.storage names a directory.
	StateDir string
	// OnReady, if set, runs once the server listens with its certificate in place: at once for
	// certificate files, once the CA has issued it for ACME.
	OnReady func()
}

// Assembly is a server built from a config, with everything it runs alongside: its listener, user
// store, certificate reload on SIGUSR1, and farm TFO keys (fastrojan.farm, reloaded on SIGHUP).
// Parts returns them in start order for service.Run; Close releases them when they never run.
type Assembly struct {
	Server   *Server
	Listener net.Listener
	parts    []service.Part
}

// FromConfig builds the server a config describes (run_type server) and opens its listener.
func FromConfig(cfg *config.Config, env Env) (_ *Assembly, err error) {
	log := env.Log
	a := &Assembly{}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	store := env.Users
	if store == nil {
		var stopUsers func(context.Context) error
		if store, stopUsers, err = usersFromConfig(cfg, log, env.Metrics); err != nil {
			return nil, err
		}
		a.parts = append(a.parts, service.Part{Name: "user ledger", Stop: stopUsers})
	}
	srv, certs, err := newFromConfig(cfg, log, store, env.Metrics, env.StateDir)
	if err != nil {
		return nil, err
	}
	a.Server = srv
	if a.Listener, err = listenFromConfig(cfg, log); err != nil {
		return nil, err
	}
	ln := a.Listener
	keys, err := startFarmKeys(cfg, ln, log, env.Metrics) // fastrojan.farm; SIGHUP reloads the secret
	if err != nil {
		return nil, err
	}
	a.parts = append(a.parts, service.Part{Name: "farm keys", Stop: func(context.Context) error { return keys.Close() }})
	stopReload := service.OnReload(func() {
		if err := certs.Reload(); err != nil {
			log.Error("certificate reload failed; keeping the old one", "err", err)
			return
		}
		log.Info("certificate reloaded", "cert", cfg.SSL.Cert, "acme", cfg.Fastrojan.ACME.Domains)
	})
	a.parts = append(a.parts, service.Part{Name: "certificate reload", Stop: func(context.Context) error { stopReload(); return nil }})
	if m, ok := certs.(*acme.Manager); ok { // fastrojan.acme: obtain (or load) the certificate, renew it
		certsPart, err := certificatesPart(m, log, env.OnReady)
		if err != nil {
			return nil, err
		}
		a.parts = append(a.parts, certsPart)
	}
	if cfg.TFOServerListen() {
		a.parts = append(a.parts, queueWatchPart(cfg, ln, log, env.Metrics))
	}
	a.parts = append(a.parts, service.Serving("server", srv, ln))
	log.Info("server listening", "addr", ln.Addr().String(), "fallback", cfg.RemoteHostPort(), "passwords", len(cfg.Password))
	if _, isACME := certs.(*acme.Manager); !isACME && env.OnReady != nil {
		env.OnReady() // certificate files: in place already
	}
	return a, nil
}

// Parts are the server and what runs alongside it, in start order.
func (a *Assembly) Parts() []service.Part { return a.parts }

// Close releases what FromConfig built, for when it is not run (Run stops the parts instead).
func (a *Assembly) Close() {
	if a.Listener != nil {
		_ = a.Listener.Close()
	}
	for i := len(a.parts) - 1; i >= 0; i-- {
		if p := a.parts[i]; p.Stop != nil && p.Run == nil {
			_ = p.Stop(context.Background())
		}
	}
}

// newFromConfig makes the Server cfg describes, reporting to m (nil: no metrics).
func newFromConfig(cfg *config.Config, log *slog.Logger, store users.Store, m *metrics.Metrics, stateDir string) (*Server, certSource, error) {
	tlsCfg, certs, err := tlsFromConfig(cfg, log, stateDir)
	if err != nil {
		return nil, nil, err
	}
	var plain []byte
	if f := cfg.SSL.PlainHTTPResponse; f != "" {
		if plain, err = os.ReadFile(f); err != nil {
			return nil, nil, fmt.Errorf("%s: $.ssl.plain_http_response: %w", cfg.Path, err)
		}
	}
	ext := cfg.Fastrojan
	srv, err := New(Options{
		TLSConfig:         tlsCfg,
		Users:             store,
		Fallback:          cfg.RemoteHostPort(),
		FallbackByALPN:    alpnFallbacks(cfg),
		PlainHTTPResponse: plain,
		TLSSite:           ext.TLSSite,
		HandshakeTimeout:  time.Duration(ext.HandshakeTimeout),
		RequestTimeout:    time.Duration(ext.RequestTimeout),
		SpareTimeout:      time.Duration(ext.SpareTimeout),
		IdleTimeout:       time.Duration(ext.IdleTimeout),
		UDPTimeout:        time.Duration(cfg.UDPTimeout) * time.Second,
		MaxConns:          ext.MaxConns,
		MaxConnsPerIP:     ext.MaxConnsPerIP,
		Logger:            log,
		Dial:              tcpopt.PlainDial(cfg.TCP),
		DialFirst:         dialFirstFromConfig(cfg, log),
		OnConn:            onConnMetrics(m),
	})
	if err != nil {
		return nil, nil, err
	}
	srv.registerMetrics(m)
	srv.registerLimitMetrics(m)
	srv.registerMuxMetrics(m)
	return srv, certs, nil
}

// alpnFallbacks maps ssl.alpn_port_override (ALPN protocol → port on remote_addr) to fallback
// addresses.
func alpnFallbacks(cfg *config.Config) map[string]string {
	if len(cfg.SSL.ALPNPortOverride) == 0 {
		return nil
	}
	m := make(map[string]string, len(cfg.SSL.ALPNPortOverride))
	for proto, port := range cfg.SSL.ALPNPortOverride {
		m[proto] = net.JoinHostPort(cfg.RemoteAddr, strconv.Itoa(port))
	}
	return m
}

// listenFromConfig opens the server's listener (or takes the one a previous process or systemd
// hands over): with TCP Fast Open when fastrojan.tfo.server_listen (default tcp.fast_open) is on, its
// queue sized by tfo.QueueLen (tcp.fast_open_qlen as a floor, or exactly with
// fastrojan.tfo.exact_qlen); MPTCP is off either way.
func listenFromConfig(cfg *config.Config, log *slog.Logger) (net.Listener, error) {
	if ln, err := handoff.Listener(cfg.LocalHostPort()); ln != nil || err != nil { // an upgrade (SIGUSR2)
		if err != nil {
			return nil, err
		}
		log.Info("serving on the listener handed over by the previous process", "addr", cfg.LocalHostPort())
		return tcpopt.WrapListener(cfg.TCP, ln), nil
	}
	if ln, ok, err := activatedListener(cfg, log); ok || err != nil { // systemd's .socket unit
		return ln, err
	}
	if !cfg.TFOServerListen() {
		return tcpopt.Listen(cfg.TCP, cfg.LocalHostPort())
	}
	configured, exact := cfg.TFOQueue()
	qlen := tfo.QueueLen(configured, exact, tfo.ListenBacklog())
	tl, err := tfo.ListenConfig(tcpopt.ListenConfig(cfg.TCP)).Listen(context.Background(), "tcp", cfg.LocalHostPort(), qlen, log)
	if err != nil {
		return nil, err
	}
	logQueue(tl, configured, exact, qlen, log)
	return tcpopt.WrapListener(cfg.TCP, tl), nil
}

// dialFirstFromConfig is the server's dial to targets that get a first payload, which then rides in
// the SYN (fastrojan.tfo.server_dial, default tcp.fast_open); nil means the ordinary dial.
func dialFirstFromConfig(cfg *config.Config, log *slog.Logger) func(context.Context, string, string) (net.Conn, error) {
	if !cfg.TFOServerDial() {
		return nil
	}
	d := &tfo.Dialer{Dialer: tcpopt.Dialer(cfg.TCP), Logger: log}
	return tcpopt.WithDialOptions(cfg.TCP, d.DialContext)
}

// onConnMetrics reports each finished server connection to m; nil without metrics.
func onConnMetrics(m *metrics.Metrics) func(ConnInfo) {
	if m == nil {
		return nil
	}
	return func(ci ConnInfo) {
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
			m.Resumed(metrics.RoleServer, ci.Resumed)
		}
	}
}

// registerMetrics exports the server's live gauges and UDP counters to m.
func (s *Server) registerMetrics(m *metrics.Metrics) {
	_ = m.GaugeFunc("fastrojan_server_connections_active", "Server connections being handled now.",
		func() float64 { return float64(s.Stats().Active) })
	m.RegisterUDP(metrics.RoleServer, func() metrics.UDP {
		u := s.Stats().UDP
		return metrics.UDP{Sessions: u.Associations, Active: u.Active, DatagramsUp: u.DatagramsUp, DatagramsDown: u.DatagramsDown,
			BytesUp: u.BytesUp, BytesDown: u.BytesDown, Dropped: u.Dropped}
	})
}

// registerLimitMetrics exports how the connection limits (fastrojan.max_conns, max_conns_per_ip)
// and the answers to non-TLS input are working.
func (s *Server) registerLimitMetrics(m *metrics.Metrics) {
	if m == nil {
		return
	}
	counter := func(name, help string, f func(Stats) int64) {
		_ = m.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(s.Stats())) }))
	}
	counter("fastrojan_server_refused_per_ip_total", "Connections closed on accept because their address held max_conns_per_ip connections.",
		func(st Stats) int64 { return st.RefusedPerIP })
	counter("fastrojan_server_max_conns_waits_total", "Times the server stopped accepting because max_conns connections were being handled.",
		func(st Stats) int64 { return st.FullWaits })
	counter("fastrojan_server_nontls_answered_total", "Non-TLS connections answered as nginx would (built in).",
		func(st Stats) int64 { return st.Decoys })
	counter("fastrojan_server_nontls_tls_site_total", "Non-TLS connections and refused TLS handshakes relayed to tls_site.",
		func(st Stats) int64 { return st.TLSSite })
	_ = m.GaugeFunc("fastrojan_server_client_addresses", "Client addresses holding connections now.",
		func() float64 { return float64(s.Stats().ClientIPs) })
}

// registerMuxMetrics exports the server's mux counters.
func (s *Server) registerMuxMetrics(m *metrics.Metrics) {
	if m == nil {
		return
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fastrojan_mux_sessions_total", Help: "trojan-go mux sessions (connections carrying streams) opened, by role.", ConstLabels: prometheus.Labels{"role": "server"}},
			func() float64 { return float64(s.Stats().MuxSessions) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fastrojan_mux_streams_total", Help: "Streams carried over trojan-go mux sessions, by role.", ConstLabels: prometheus.Labels{"role": "server"}},
			func() float64 { return float64(s.Stats().MuxStreams) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fastrojan_mux_streams_rejected_total", Help: "Server: mux streams closed for a bad SimpleSocks header or over the per-session limit."},
			func() float64 { return float64(s.Stats().MuxBadStreams) }),
	} {
		_ = m.Register(c)
	}
}
