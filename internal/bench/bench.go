// Package bench measures what TCP Fast Open buys through a Trojan endpoint: time to first byte of
// an HTTP response over new connections, with TFO and without, interleaved (A B A B) after a
// warm-up that caches the cookie, so that drift in the network or the machine hits both modes
// alike. Every connection records the TFO outcome the kernel reports and the kernel's RTT
// estimate, so the saving is given in milliseconds and in round trips.
package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/pool"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tfo/pathstate"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// Modes.
const (
	ModeTFO   = "tfo"
	ModePlain = "plain"
)

// DialFunc opens a TCP connection.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Options describe one run.
type Options struct {
	Server string      // the Trojan server, host:port
	TLS    *tls.Config // the client's TLS config (the same for both modes)
	Hash   trojan.Hash
	URL    string // http:// URL fetched through the server

	// DialTFO and DialPlain open the TCP connection to the server in each mode. Nil means a
	// tfo.Dialer and a net.Dialer.
	DialTFO, DialPlain DialFunc
	// Paths, if set, gives TFO mode the client's per-server TFO memory and racing (README "Hostile
	// paths"): what a fastrojan client does, rather than TFO on every connection whatever happens.
	Paths *pathstate.Table
	// Do runs fn where the connections live (a netlab host's Do), to read the kernel's view of
	// them; nil runs fn directly.
	Do func(fn func() error) error
	// Counters, if set, reads the kernel's TcpExt counters of the client's and (if known, else
	// nil) the server's namespace; the report gives their growth over the measured run.
	Counters func() (client, server map[string]uint64, err error)
	// Modes to measure, interleaved in this order; default tfo and plain.
	Modes []string

	N               int           // measured connections per mode; default 200
	Warmup          int           // unmeasured connections per mode first; default 2
	Concurrency     int           // connections in flight at once; default 1
	RequestsPerConn int           // HTTP requests per connection (keep-alive); default 1
	Timeout         time.Duration // bound of one connection; default 10s

	// Warm adds a third mode, ModeWarm: streams on spare connections from a pool, as the client
	// sends them by default (README "Warm path").
	Warm bool
	// Pool is the warm mode's pool as the measured client's config sets it (client.PoolOptions);
	// nil means the default client config's. Its DialTimeout is replaced by Timeout.
	Pool *pool.Options

	// Progress, if set, is called after each measured connection with the count done and the
	// total. Calls come from one goroutine at a time.
	Progress func(done, total int)
}

func (o *Options) defaults() error {
	if o.Server == "" || o.TLS == nil || o.URL == "" {
		return errors.New("bench: Server, TLS and URL are required")
	}
	if o.Warm && o.Pool != nil && o.Pool.Spares <= 0 {
		return errors.New("bench: warm mode needs spare connections, and the client config turns them off (fastrojan.pool.spares 0)")
	}
	if o.N <= 0 {
		o.N = 200
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	} else if o.Warmup == 0 {
		o.Warmup = 2
	}
	o.Concurrency = max(o.Concurrency, 1)
	o.RequestsPerConn = max(o.RequestsPerConn, 1)
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.DialTFO == nil {
		d := &tfo.Dialer{}
		o.DialTFO = d.DialContext
	}
	if o.DialPlain == nil {
		d := &net.Dialer{}
		o.DialPlain = d.DialContext
	}
	if o.Do == nil {
		o.Do = func(fn func() error) error { return fn() }
	}
	if len(o.Modes) == 0 {
		o.Modes = []string{ModeTFO, ModePlain}
	}
	for _, m := range o.Modes {
		if m != ModeTFO && m != ModePlain {
			return fmt.Errorf("bench: unknown mode %q (want %s or %s)", m, ModeTFO, ModePlain)
		}
	}
	return nil
}

// Sample is one measured connection.
type Sample struct {
	Mode    string        `json:"mode"`
	Seq     int           `json:"seq"` // order in which the connection started
	OK      bool          `json:"ok"`
	Err     string        `json:"error,omitempty"`
	Outcome string        `json:"outcome"`            // TFO outcome of the connection to the server
	TTFB    time.Duration `json:"ttfb_ns"`            // dial start to the first byte of the (first) response
	Total   time.Duration `json:"total_ns"`           // dial start to the last byte of the last response
	RTT     time.Duration `json:"rtt_ns"`             // the kernel's tcpi_rtt for the connection
	Hello   int           `json:"client_hello_bytes"` // size of the first write (the TLS ClientHello)
}

// target is the parsed URL: what the server connects to and what is sent.
type target struct {
	dest trojan.Addr
	host string
	path string
}

func parseTarget(raw string) (target, error) {
	req, err := http.NewRequest(http.MethodGet, raw, nil)
	if err != nil {
		return target{}, fmt.Errorf("bench URL: %w", err)
	}
	if req.URL.Scheme != "http" {
		return target{}, fmt.Errorf("bench URL %q: only http:// URLs (the TLS that matters is the tunnel's)", raw)
	}
	port := req.URL.Port()
	if port == "" {
		port = "80"
	}
	dest, err := trojan.ParseAddrString(net.JoinHostPort(req.URL.Hostname(), port))
	if err != nil {
		return target{}, fmt.Errorf("bench URL %q: %w", raw, err)
	}
	return target{dest: dest, host: req.URL.Host, path: req.URL.RequestURI()}, nil
}

func (t target) request(last bool) []byte {
	conn := "keep-alive"
	if last {
		conn = "close"
	}
	return fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: fastrojan-bench\r\nAccept: */*\r\nConnection: %s\r\n\r\n", t.path, t.host, conn)
}

// Run measures. It stops early, returning what it has with ctx's error, when ctx ends.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	tgt, err := parseTarget(opts.URL)
	if err != nil {
		return nil, err
	}
	r := &runner{opts: opts, tgt: tgt}
	if opts.Warm {
		opts.Modes = append(opts.Modes, ModeWarm)
		r.opts.Modes = opts.Modes
		r.warm = r.newWarmPool()
		defer r.warm.Close()
	}
	// Warm-up: TFO first, so the cookie is cached before anything is measured.
	var warm time.Duration // the last warm-up connection's time to first byte
	for i := 0; i < opts.Warmup; i++ {
		for _, m := range opts.Modes {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if s := r.one(ctx, m, -1); s.OK {
				warm = s.TTFB
			}
		}
	}
	var before counterSnap // before any measured connection starts
	if opts.Counters != nil {
		before.client, before.server, before.err = opts.Counters()
	}
	jobs := make(chan job)
	results := make(chan Sample)
	var wg sync.WaitGroup
	// With several connections in flight, the workers start spread over one connection's time (the
	// warm-up's), as arrivals at a loaded server are, rather than all in the same millisecond,
	// which would measure the burst instead of the load.
	spacing := warm / time.Duration(opts.Concurrency)
	for i := range opts.Concurrency {
		wg.Add(1)
		go func() { // owned by Run: ends when jobs closes
			defer wg.Done()
			if i > 0 && spacing > 0 {
				select {
				case <-time.After(time.Duration(i) * spacing):
				case <-ctx.Done():
				}
			}
			for j := range jobs {
				results <- r.one(ctx, j.mode, j.seq)
			}
		}()
	}
	go func() { // owned by Run: feeds the workers A B A B, closes jobs, then results
		defer close(results)
		defer wg.Wait()
		defer close(jobs)
		for i := 0; i < len(opts.Modes)*opts.N; i++ {
			m := opts.Modes[i%len(opts.Modes)]
			select {
			case jobs <- job{mode: m, seq: i}:
			case <-ctx.Done():
				return
			}
		}
	}()
	start := time.Now()
	var samples []Sample
	for s := range results {
		samples = append(samples, s)
		if opts.Progress != nil {
			opts.Progress(len(samples), len(opts.Modes)*opts.N)
		}
	}
	rep := newReport(opts, samples, time.Since(start))
	rep.Pool = warmStats(r.warm)
	if opts.Counters != nil && before.err == nil {
		var after counterSnap
		if after.client, after.server, after.err = opts.Counters(); after.err == nil {
			rep.Kernel = kernelDelta(before, after)
		}
	}
	return rep, ctx.Err()
}

type job struct {
	mode string
	seq  int
}

type runner struct {
	opts Options
	tgt  target
	warm *pool.Pool // ModeWarm's spares; nil without Options.Warm
}

// one makes one connection through the server in mode and measures it.
func (r *runner) one(ctx context.Context, mode string, seq int) Sample {
	s := Sample{Mode: mode, Seq: seq}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	dial := r.opts.DialPlain
	if mode == ModeTFO {
		dial = r.opts.DialTFO
	}
	var raw net.Conn
	recDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		raw = c
		return c, nil
	}
	var kept tfo.Outcome // the outcome of the connection kept, with Paths
	ob := &outbound.Trojan{Server: r.opts.Server, TLS: r.opts.TLS, Hash: r.opts.Hash, HandshakeTimeout: r.opts.Timeout, DialPlain: recDial,
		Observe: func(hi outbound.HandshakeInfo) { s.Hello, kept = hi.HelloBytes, hi.TFO }}
	if mode == ModeTFO {
		ob.DialTFO = recDial
		if r.opts.Paths != nil {
			ob.Paths, ob.DialPlain = r.opts.Paths, r.opts.DialPlain
		}
	}
	start := time.Now()
	n := r.opts.RequestsPerConn
	var conn net.Conn
	var err error
	if mode == ModeWarm {
		conn, err = r.warmConn(ctx, &s, r.tgt.request(n == 1))
	} else {
		var tc *tls.Conn
		tc, err = ob.Connect(ctx, r.tgt.dest, r.tgt.request(n == 1))
		if tc != nil {
			conn = tc
		}
	}
	if raw != nil && mode != ModeWarm {
		defer raw.Close()
		_ = r.opts.Do(func() error { s.Outcome = tfo.ClientOutcome(raw).String(); return nil })
		s.RTT, _ = tfo.KernelRTT(raw)
	}
	if err != nil {
		s.Err = err.Error()
		return s
	}
	defer conn.Close()
	if ob.Paths != nil { // raw may be a TFO attempt that lost a race: read the connection kept
		s.Outcome = kept.String()
		s.RTT, _ = tfo.KernelRTT(conn)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	br := bufio.NewReader(conn)
	for i := range n {
		if i > 0 {
			if _, err := conn.Write(r.tgt.request(i == n-1)); err != nil {
				s.Err = fmt.Sprintf("request %d: %v", i+1, err)
				return s
			}
		}
		if _, err := br.Peek(1); err != nil {
			s.Err = fmt.Sprintf("response %d: %v", i+1, err)
			return s
		}
		if i == 0 {
			s.TTFB = time.Since(start)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			s.Err = fmt.Sprintf("response %d: %v", i+1, err)
			return s
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			s.Err = fmt.Sprintf("response %d body: %v", i+1, err)
			return s
		}
		if resp.StatusCode >= 500 {
			s.Err = fmt.Sprintf("response %d: status %s", i+1, resp.Status)
			return s
		}
	}
	s.Total = time.Since(start)
	s.OK = true
	if s.Outcome == "" {
		s.Outcome = tfo.NotAttempted.String()
	}
	return s
}
