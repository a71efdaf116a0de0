// Package metrics exposes fastrojan's Prometheus metrics: connections, bytes, TLS handshake latency,
// TCP Fast Open outcomes per leg, and the kernel's own TFO counters (TcpExt TCPFastOpen* of the
// process's network namespace). Other packages add their collectors with Register.
//
// A nil *Metrics is valid: every method is a no-op, so code reports unconditionally.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fastrojan/fastrojan/internal/handoff"
	"github.com/fastrojan/fastrojan/internal/service"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// Legs of a proxied connection, as the "leg" label of TFO outcomes.
const (
	LegClient       = "client"        // client → server (the ClientHello in the SYN)
	LegServerAccept = "server_accept" // the server's listener, per accepted connection
	LegServerDial   = "server_dial"   // server → target (the client's first bytes in the SYN)
)

// Roles, as the "role" label.
const (
	RoleClient = "client"
	RoleServer = "server"
)

// Metrics holds fastrojan's collectors in their own registry.
type Metrics struct {
	reg       *prometheus.Registry
	conns     *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	handshake *prometheus.HistogramVec
	resumed   *prometheus.CounterVec
	tfo       *prometheus.CounterVec
	hello     *prometheus.GaugeVec
}

// HandshakeBuckets are the TLS handshake latency buckets in seconds: fine around the round trips of
// real paths, where TFO's saving of one RTT shows.
var HandshakeBuckets = []float64{.001, .0025, .005, .01, .02, .03, .05, .075, .1, .15, .2, .3, .5, .75, 1, 1.5, 2.5, 5, 10}

// New returns a Metrics with fastrojan's collectors, the kernel TFO counters and the Go runtime and
// process collectors registered.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fastrojan_connections_total",
			Help: "Connections handled, by role and result (server: connect, fallback, tls_handshake_failed, ...; client: ok, failed).",
		}, []string{"role", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fastrojan_bytes_total",
			Help: "Bytes relayed, by role and direction (up: from the application towards the target; down: back).",
		}, []string{"role", "direction"}),
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fastrojan_tls_handshake_seconds",
			Help:    "TLS handshake latency. Client: dial start to handshake done (includes the TCP connect). Server: first byte to handshake done.",
			Buckets: HandshakeBuckets,
		}, []string{"role"}),
		tfo: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fastrojan_tfo_outcomes_total",
			Help: "TCP Fast Open outcome per connection as the kernel reports it (TCP_INFO), by leg (client, server_accept, server_dial).",
		}, []string{"leg", "outcome"}),
		resumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fastrojan_tls_handshakes_total",
			Help: "TLS handshakes completed, by role and by whether they resumed a session (ssl.reuse_session).",
		}, []string{"role", "resumed"}),
		hello: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fastrojan_client_hello_bytes",
			Help: "Size of the last TLS ClientHello record sent to the server (what a TFO SYN must carry; at most 1420 bytes IPv4, 1400 IPv6), by whether the session was resumed.",
		}, []string{"resumed"}),
	}
	m.reg.MustRegister(m.conns, m.bytes, m.handshake, m.resumed, m.tfo, m.hello, NewKernelTFOCollector(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds a collector (for example a user store's health) to the registry.
func (m *Metrics) Register(c prometheus.Collector) error {
	if m == nil {
		return nil
	}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("register metrics collector: %w", err)
	}
	return nil
}

// Gatherer returns the registry, for tests and for serving it elsewhere.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// GaugeFunc registers a gauge whose value f reads at scrape time (for example active connections).
func (m *Metrics) GaugeFunc(name, help string, f func() float64) error {
	if m == nil {
		return nil
	}
	return m.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// Conn counts one finished connection.
func (m *Metrics) Conn(role, result string) {
	if m == nil {
		return
	}
	m.conns.WithLabelValues(role, result).Inc()
}

// Bytes adds relayed bytes.
func (m *Metrics) Bytes(role string, up, down int64) {
	if m == nil {
		return
	}
	if up > 0 {
		m.bytes.WithLabelValues(role, "up").Add(float64(up))
	}
	if down > 0 {
		m.bytes.WithLabelValues(role, "down").Add(float64(down))
	}
}

// Handshake records one completed TLS handshake's latency.
func (m *Metrics) Handshake(role string, d time.Duration) {
	if m == nil {
		return
	}
	m.handshake.WithLabelValues(role).Observe(d.Seconds())
}

// Resumed counts one completed TLS handshake of role, by whether it resumed a session.
func (m *Metrics) Resumed(role string, resumed bool) {
	if m == nil {
		return
	}
	m.resumed.WithLabelValues(role, strconv.FormatBool(resumed)).Inc()
}

// TFO counts one connection's TFO outcome on leg.
func (m *Metrics) TFO(leg string, o tfo.Outcome) {
	if m == nil {
		return
	}
	m.tfo.WithLabelValues(leg, o.String()).Inc()
}

// ClientHello records the size of a ClientHello the client sent.
func (m *Metrics) ClientHello(bytes int, resumed bool) {
	if m == nil || bytes <= 0 {
		return
	}
	label := "false"
	if resumed {
		label = "true"
	}
	m.hello.WithLabelValues(label).Set(float64(bytes))
}

// Handler serves the registry in the Prometheus text format. A collector that fails is reported in
// the response and does not hide the others.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Endpoint is a running /metrics HTTP server.
type Endpoint struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	once sync.Once
}

// Listen serves /metrics on addr (host:port) until Close.
func (m *Metrics) Listen(addr string, log *slog.Logger) (*Endpoint, error) {
	return m.listen(addr, false, log)
}

func (m *Metrics) listen(addr string, pprof bool, log *slog.Logger) (*Endpoint, error) {
	if log == nil {
		log = slog.Default()
	}
	ln, err := handoff.Listener(addr) // the previous process's socket, on an upgrade
	if ln == nil && err == nil {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if pprof {
		mux.HandleFunc("GET /debug/pprof/", httppprof.Index) // heap, allocs, goroutine, block, mutex
		mux.HandleFunc("GET /debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", httppprof.Trace)
	}
	e := &Endpoint{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(e.done)
		if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return e, nil
}

// Listener is the endpoint's listening socket (handed to a new process on an upgrade).
func (e *Endpoint) Listener() net.Listener { return e.ln }

// Addr is the address the endpoint listens on.
func (e *Endpoint) Addr() net.Addr { return e.ln.Addr() }

// Close stops the endpoint, waiting up to a second for scrapes in progress, and returns once its
// goroutine has ended. It is safe to call more than once.
func (e *Endpoint) Close() error {
	var err error
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err = e.srv.Shutdown(ctx); err != nil {
			err = errors.Join(err, e.srv.Close())
		}
	})
	<-e.done
	return err
}

// Serve makes a Metrics served on addr (fastrojan.metrics_listen) as a service part that stops the
// endpoint, and returns the endpoint's listener (for a hand-off on an upgrade). An empty addr means
// no metrics: a nil Metrics, on which every method is a no-op, and a nil listener. With pprof the
// endpoint also serves Go's profiles under /debug/pprof/ (fastrojan.pprof).
func Serve(addr string, pprof bool, log *slog.Logger) (*Metrics, service.Part, net.Listener, error) {
	part := service.Part{Name: "metrics endpoint"}
	if addr == "" {
		return nil, part, nil, nil
	}
	m := New()
	ep, err := m.listen(addr, pprof, log)
	if err != nil {
		return nil, part, nil, err
	}
	log.Info("metrics endpoint listening", "url", "http://"+ep.Addr().String()+"/metrics")
	if pprof {
		log.Info("Go profiles served (fastrojan.pprof)", "url", "http://"+ep.Addr().String()+"/debug/pprof/")
	}
	part.Stop = func(context.Context) error { return ep.Close() }
	return m, part, ep.Listener(), nil
}
