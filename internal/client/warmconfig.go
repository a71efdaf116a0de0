package client

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/metrics"
	"github.com/fastrojan/fastrojan/internal/mux"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/pool"
)

// poolFromConfig builds the client's pool of spare connections from fastrojan.pool (nil when spares is
// 0, or with mux, whose sessions carry the streams) and exports its counters.
func poolFromConfig(cfg *config.Config, out *outbound.Trojan, log *slog.Logger, m *metrics.Metrics) *pool.Pool {
	if cfg.Mux.Enabled {
		return nil
	}
	opts := PoolOptions(cfg)
	opts.Logger = log
	p := pool.New(out.Open, opts)
	if p == nil {
		log.Info("no spare connections (fastrojan.pool.spares 0): every stream opens its own connection")
		return nil
	}
	registerPool(m, p)
	return p
}

// PoolOptions is the pool a client with cfg keeps (fastrojan.pool); Spares 0 means none. fastrojan
// bench --warm measures with the same.
func PoolOptions(cfg *config.Config) pool.Options {
	pc := cfg.Fastrojan.Pool
	return pool.Options{
		Spares:      pc.Spares,
		Linger:      time.Duration(pc.Linger),
		MaxAge:      time.Duration(pc.MaxAge),
		DialTimeout: time.Duration(cfg.Fastrojan.HandshakeTimeout),
	}
}

// registerPool exports the pool's counters, read at scrape time.
func registerPool(m *metrics.Metrics, p *pool.Pool) {
	if m == nil {
		return
	}
	counter := func(name, help string, labels prometheus.Labels, f func(pool.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f(p.Stats())) })
	}
	const (
		streamsHelp = "New client streams by how they got their connection to the server: hit (a ready spare), joined (a spare being opened), miss (opened their own)."
		sparesHelp  = "Spare connections by event: opened, failed (opening failed), retired (closed unused by the pool), peer_closed (closed by the server before use)."
	)
	for _, c := range []prometheus.Collector{
		counter("fastrojan_pool_streams_total", streamsHelp, prometheus.Labels{"result": "hit"}, func(s pool.Stats) int64 { return s.Hits }),
		counter("fastrojan_pool_streams_total", streamsHelp, prometheus.Labels{"result": "joined"}, func(s pool.Stats) int64 { return s.Joined }),
		counter("fastrojan_pool_streams_total", streamsHelp, prometheus.Labels{"result": "miss"}, func(s pool.Stats) int64 { return s.Misses }),
		counter("fastrojan_pool_spares_total", sparesHelp, prometheus.Labels{"event": "opened"}, func(s pool.Stats) int64 { return s.Opened }),
		counter("fastrojan_pool_spares_total", sparesHelp, prometheus.Labels{"event": "failed"}, func(s pool.Stats) int64 { return s.Failed }),
		counter("fastrojan_pool_spares_total", sparesHelp, prometheus.Labels{"event": "retired"}, func(s pool.Stats) int64 { return s.Retired }),
		counter("fastrojan_pool_spares_total", sparesHelp, prometheus.Labels{"event": "peer_closed"}, func(s pool.Stats) int64 { return s.PeerClosed }),
		counter("fastrojan_pool_retries_total", "Streams on a spare that failed before the server's first byte and were sent again on a fresh connection.", nil,
			func(s pool.Stats) int64 { return s.Retried }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fastrojan_pool_spares_ready", Help: "Spare connections ready now."},
			func() float64 { return float64(p.Stats().Ready) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fastrojan_pool_learned_limit_seconds", Help: "Shortest age at which the server closed a silent spare (0: none seen); spares are retired at 60% of it."},
			func() float64 { return p.Stats().LearnedLimit.Seconds() }),
	} {
		_ = m.Register(c)
	}
}

// muxFromConfig builds the client's trojan-go mux from the top-level "mux" object (nil unless enabled).
// Its sessions are long-lived, so they open ordinary connections: no pool of spares with mux.
func muxFromConfig(cfg *config.Config, out *outbound.Trojan, log *slog.Logger, m *metrics.Metrics) *mux.Client {
	if !cfg.Mux.Enabled {
		return nil
	}
	mc := mux.NewClient(out.Open, out.Hash, mux.ClientOptions{
		Concurrency: cfg.Mux.Concurrency,
		IdleTimeout: time.Duration(cfg.Mux.IdleTimeout) * time.Second,
		Logger:      log,
	})
	log.Info("trojan-go mux on: TCP streams share connections", "concurrency", cfg.Mux.Concurrency, "idle_timeout_s", cfg.Mux.IdleTimeout)
	if m != nil {
		for _, c := range []prometheus.Collector{
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fastrojan_mux_sessions_total", Help: "trojan-go mux sessions (connections carrying streams) opened, by role.", ConstLabels: prometheus.Labels{"role": "client"}},
				func() float64 { return float64(mc.Stats().Sessions) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fastrojan_mux_streams_total", Help: "Streams carried over trojan-go mux sessions, by role.", ConstLabels: prometheus.Labels{"role": "client"}},
				func() float64 { return float64(mc.Stats().Streams) }),
		} {
			_ = m.Register(c)
		}
	}
	return mc
}
