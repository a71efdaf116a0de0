package cli

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fastrojan/fastrojan/internal/server"
)

// registerServerLimits exports how the connection limits (fastrojan.max_conns, max_conns_per_ip)
// and the answers to non-TLS input are working.
func (t *telemetry) registerServerLimits(srv *server.Server) {
	if t.metrics == nil {
		return
	}
	counter := func(name, help string, f func(server.Stats) int64) {
		_ = t.metrics.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(srv.Stats())) }))
	}
	counter("fastrojan_server_refused_per_ip_total", "Connections closed on accept because their address held max_conns_per_ip connections.",
		func(s server.Stats) int64 { return s.RefusedPerIP })
	counter("fastrojan_server_max_conns_waits_total", "Times the server stopped accepting because max_conns connections were being handled.",
		func(s server.Stats) int64 { return s.FullWaits })
	counter("fastrojan_server_nontls_answered_total", "Non-TLS connections answered as nginx would (built in).",
		func(s server.Stats) int64 { return s.Decoys })
	counter("fastrojan_server_nontls_tls_site_total", "Non-TLS connections and refused TLS handshakes relayed to tls_site.",
		func(s server.Stats) int64 { return s.TLSSite })
	_ = t.metrics.GaugeFunc("fastrojan_server_client_addresses", "Client addresses holding connections now.",
		func() float64 { return float64(srv.Stats().ClientIPs) })
}
