package cli

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fastrojan/fastrojan/internal/client"
	"github.com/fastrojan/fastrojan/internal/metrics"
	"github.com/fastrojan/fastrojan/internal/server"
)

// udpCounters is what the client and the server count about UDP, in one shape for metrics.
type udpCounters struct {
	sessions, active, dgUp, dgDown, bytesUp, bytesDown, dropped int64
}

// registerUDP exports UDP counters read at scrape time, labelled with role.
func (t *telemetry) registerUDP(role string, read func() udpCounters) {
	if t.metrics == nil {
		return
	}
	labels := prometheus.Labels{"role": role}
	counter := func(name, help string, extra prometheus.Labels, f func(udpCounters) int64) prometheus.Collector {
		l := prometheus.Labels{}
		for k, v := range labels {
			l[k] = v
		}
		for k, v := range extra {
			l[k] = v
		}
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: l},
			func() float64 { return float64(f(read())) })
	}
	up, down := prometheus.Labels{"direction": "up"}, prometheus.Labels{"direction": "down"}
	const (
		dgHelp    = "UDP datagrams relayed, by role and direction (up: from the application towards the target)."
		bytesHelp = "UDP payload bytes relayed, by role and direction."
	)
	for _, c := range []prometheus.Collector{
		counter("fastrojan_udp_sessions_total", "UDP associations (Trojan connections carrying UDP) opened, by role.", nil,
			func(u udpCounters) int64 { return u.sessions }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fastrojan_udp_sessions_active", Help: "UDP associations open now, by role.", ConstLabels: labels},
			func() float64 { return float64(read().active) }),
		counter("fastrojan_udp_datagrams_total", dgHelp, up, func(u udpCounters) int64 { return u.dgUp }),
		counter("fastrojan_udp_datagrams_total", dgHelp, down, func(u udpCounters) int64 { return u.dgDown }),
		counter("fastrojan_udp_bytes_total", bytesHelp, up, func(u udpCounters) int64 { return u.bytesUp }),
		counter("fastrojan_udp_bytes_total", bytesHelp, down, func(u udpCounters) int64 { return u.bytesDown }),
		counter("fastrojan_udp_dropped_total", "UDP datagrams dropped (wrong source, malformed, too large, unresolvable), by role.", nil,
			func(u udpCounters) int64 { return u.dropped }),
	} {
		_ = t.metrics.Register(c)
	}
}

// registerServerUDP exports the server's UDP ASSOCIATE counters.
func (t *telemetry) registerServerUDP(srv *server.Server) {
	t.registerUDP(metrics.RoleServer, func() udpCounters {
		u := srv.Stats().UDP
		return udpCounters{u.Associations, u.Active, u.DatagramsUp, u.DatagramsDown, u.BytesUp, u.BytesDown, u.Dropped}
	})
}

// registerClientUDP exports the client's UDP counters (SOCKS5 UDP ASSOCIATE, forward and nat).
func (t *telemetry) registerClientUDP(cl *client.Client) {
	t.registerUDP(metrics.RoleClient, func() udpCounters {
		u := cl.Stats().UDP
		return udpCounters{u.Sessions, u.Active, u.DatagramsUp, u.DatagramsDown, u.BytesUp, u.BytesDown, u.Dropped}
	})
}
