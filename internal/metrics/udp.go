package metrics

import "github.com/prometheus/client_golang/prometheus"

// UDP is what the client and the server count about UDP, in one shape: sessions (client) and
// associations (server) alike are Trojan connections carrying UDP.
type UDP struct {
	Sessions, Active, DatagramsUp, DatagramsDown, BytesUp, BytesDown, Dropped int64
}

// RegisterUDP exports UDP counters read at scrape time, labelled with role.
func (m *Metrics) RegisterUDP(role string, read func() UDP) {
	if m == nil {
		return
	}
	labels := prometheus.Labels{"role": role}
	counter := func(name, help string, extra prometheus.Labels, f func(UDP) int64) prometheus.Collector {
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
			func(u UDP) int64 { return u.Sessions }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fastrojan_udp_sessions_active", Help: "UDP associations open now, by role.", ConstLabels: labels},
			func() float64 { return float64(read().Active) }),
		counter("fastrojan_udp_datagrams_total", dgHelp, up, func(u UDP) int64 { return u.DatagramsUp }),
		counter("fastrojan_udp_datagrams_total", dgHelp, down, func(u UDP) int64 { return u.DatagramsDown }),
		counter("fastrojan_udp_bytes_total", bytesHelp, up, func(u UDP) int64 { return u.BytesUp }),
		counter("fastrojan_udp_bytes_total", bytesHelp, down, func(u UDP) int64 { return u.BytesDown }),
		counter("fastrojan_udp_dropped_total", "UDP datagrams dropped (wrong source, malformed, too large, unresolvable), by role.", nil,
			func(u UDP) int64 { return u.Dropped }),
	} {
		_ = m.Register(c)
	}
}
