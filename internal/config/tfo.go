package config

import (
	"net"
	"strconv"
)

// TFO is the "fastrojan.tfo" object: TCP Fast Open switched per leg. A missing (or null) key follows
// tcp.fast_open, so `"tcp": {"fast_open": true}` alone enables every leg, as in trojan-gfw.
type TFO struct {
	// Client: the client's connection to the server sends the TLS ClientHello in the SYN.
	Client *bool `json:"client,omitempty"`
	// ServerListen: the server's listener accepts data in the SYN (tcp.fast_open_qlen pending).
	ServerListen *bool `json:"server_listen,omitempty"`
	// ServerDial: the server's connections to targets carry the client's first bytes in the SYN.
	ServerDial *bool `json:"server_dial,omitempty"`
	// ExactQLen: the server's TFO queue is exactly tcp.fast_open_qlen. Off (default): fast_open_qlen
	// is a floor and the queue follows the listen backlog (net.core.somaxconn), so that load does
	// not make the kernel refuse SYN data (DESIGN.md 3.10).
	ExactQLen bool `json:"exact_qlen,omitempty"`
}

func orDefault(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// TFOClient reports whether the client dials the server with TCP Fast Open.
func (c *Config) TFOClient() bool { return orDefault(c.Fastrojan.TFO.Client, c.TCP.FastOpen) }

// TFOServerListen reports whether the server's listener accepts TCP Fast Open.
func (c *Config) TFOServerListen() bool {
	return orDefault(c.Fastrojan.TFO.ServerListen, c.TCP.FastOpen)
}

// TFOServerDial reports whether the server dials targets with TCP Fast Open.
func (c *Config) TFOServerDial() bool { return orDefault(c.Fastrojan.TFO.ServerDial, c.TCP.FastOpen) }

// TFOQueue returns tcp.fast_open_qlen and whether the server's TFO queue must be exactly that
// (fastrojan.tfo.exact_qlen) rather than at least that.
func (c *Config) TFOQueue() (qlen int, exact bool) {
	return c.TCP.FastOpenQLen, c.Fastrojan.TFO.ExactQLen
}

func (v *validator) tfo(c *Config) {
	if a := c.Fastrojan.MetricsListen; a != "" {
		_, port, err := net.SplitHostPort(a)
		if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 0 || p > 65535 {
			v.add("$.fastrojan.metrics_listen", "must be host:port such as \"127.0.0.1:9100\" (empty: no metrics), got %q", a)
		}
	}
	if c.Fastrojan.Pprof && c.Fastrojan.MetricsListen == "" {
		v.add("$.fastrojan.pprof", "serves /debug/pprof/ on the metrics endpoint: set fastrojan.metrics_listen too (say \"127.0.0.1:9100\"), or drop pprof")
	}
}
