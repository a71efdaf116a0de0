package bench

import (
	"context"
	"net"

	"github.com/fastrojan/fastrojan/internal/client"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/pool"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// ModeWarm is a new stream on a spare connection from the client's pool (package pool), as a
// fastrojan client with its default config sends it: cold TFO is ModeTFO, warm is this.
const ModeWarm = "warm"

// Outcomes of a warm-mode stream, in place of a TFO outcome.
const (
	OutcomeSpare = "spare"          // rode a ready spare, or one being opened
	OutcomeOwn   = "own_connection" // no spare: opened its own, with TFO
)

// newWarmPool is the pool warm mode takes its connections from: the measured client's settings
// (Options.Pool, else the default config's), its spares opened with TFO (and the per-server TFO
// memory, as the client does).
func (r *runner) newWarmPool() *pool.Pool {
	ob := &outbound.Trojan{Server: r.opts.Server, TLS: r.opts.TLS, Hash: r.opts.Hash, HandshakeTimeout: r.opts.Timeout,
		DialTFO: r.opts.DialTFO, Paths: r.opts.Paths, DialPlain: r.opts.DialPlain}
	po := client.PoolOptions(config.Default(config.RunClient))
	if r.opts.Pool != nil {
		po = *r.opts.Pool
	}
	po.DialTimeout = r.opts.Timeout
	return pool.New(ob.Open, po)
}

// warmConn opens a stream on a spare (or its own connection) and sends the request with payload.
func (r *runner) warmConn(ctx context.Context, s *Sample, payload []byte) (net.Conn, error) {
	conn, pooled, err := r.warm.Get(ctx)
	if err != nil {
		return nil, err
	}
	s.Outcome = OutcomeOwn
	if pooled {
		s.Outcome = OutcomeSpare
	}
	ob := &outbound.Trojan{Server: r.opts.Server, Hash: r.opts.Hash}
	if err := ob.Request(conn, trojan.CmdConnect, r.tgt.dest, payload); err != nil {
		_ = conn.Close()
		return nil, err
	}
	s.RTT, _ = tfo.KernelRTT(conn)
	return conn, nil
}

// warmStats counts how warm-mode streams got their connection.
func warmStats(p *pool.Pool) *PoolStats {
	if p == nil {
		return nil
	}
	st := p.Stats()
	return &PoolStats{Hits: st.Hits, Joined: st.Joined, Misses: st.Misses, Opened: st.Opened, Retired: st.Retired}
}

// PoolStats are the warm mode's pool counters at the end of the run (warm-up included).
type PoolStats struct {
	Hits    int64 `json:"hits"`
	Joined  int64 `json:"joined"`
	Misses  int64 `json:"misses"`
	Opened  int64 `json:"spares_opened"`
	Retired int64 `json:"spares_retired"`
}
