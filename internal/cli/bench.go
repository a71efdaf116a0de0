package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/fastrojan/fastrojan/internal/bench"
	"github.com/fastrojan/fastrojan/internal/client"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

const benchUsage = "usage: fastrojan bench (-c client.json | --server 'trojan://...' | --lab 50ms [-c server.json] [--lab-fault drop-syn-data]\n" +
	"                       [--lab-loss 2%] [--lab-seed N] [--lab-qlen 20] [--lab-exact-qlen])\n" +
	"                       [--url http://HOST/PATH] [-n 200] [--concurrency 1] [--requests-per-conn 1] [--mode both|tfo|plain] [--warm]\n" +
	"                       [--json] [--plot FILE.png|.svg]"

// benchCommand is `fastrojan bench`: time to first byte through a Trojan server with TFO and
// without, interleaved, against a real server (-c or --server) or in an emulated WAN (--lab RTT).
func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newBenchFlags(stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		return benchBad(stderr, "unexpected argument %q", fs.Arg(0))
	}
	if msg := f.request().Problem(); msg != "" {
		return benchBad(stderr, "%s", msg)
	}
	log := newLogger(stderr, slog.LevelWarn, "text")

	var opts bench.Options
	var labInfo *bench.LabInfo
	if f.labRTT > 0 {
		lab, code := startBenchLab(f, log, stderr)
		if code != exitOK {
			return code
		}
		defer lab.close()
		opts, labInfo = lab.opts, lab.info
	} else {
		var code int
		if opts, code = benchRemote(f, log, stderr); code != exitOK {
			return code
		}
	}
	f.apply(&opts)
	prog := bench.NewProgress(stderr)
	opts.Progress = prog.Update
	rep, err := bench.Run(ctx, opts)
	prog.Finish()
	if rep == nil {
		fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
		return exitFail
	}
	rep.Lab = labInfo
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan bench: stopped early: %v\n", err)
	}
	return writeBench(rep, f.asJSON, f.plotFile, stdout, stderr)
}

// benchBad reports a usage error with bench's usage and returns exitUsage.
func benchBad(stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "fastrojan bench: "+format+"\n%s\n", append(a, benchUsage)...)
	return exitUsage
}

// benchFlags are bench's command-line flags.
type benchFlags struct {
	path, link, url          string
	n, warmup, conc, perConn int
	timeout, labRTT          time.Duration
	labFault, labLoss        string
	labSeed                  uint64
	labQLen                  int
	labExact, warm, asJSON   bool
	mode, plotFile           string
}

// newBenchFlags defines bench's flags on a flag set that reports to stderr.
func newBenchFlags(stderr io.Writer) (*flag.FlagSet, *benchFlags) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, benchUsage)
		fs.PrintDefaults()
	}
	f := &benchFlags{}
	fs.StringVar(&f.path, "c", "", "client `config.json` naming the server, password and TLS settings")
	fs.StringVar(&f.link, "server", "", "the server as a trojan:// `LINK` (instead of -c)")
	fs.StringVar(&f.url, "url", "", "http:// `URL` fetched through the server (required unless --lab)")
	fs.IntVar(&f.n, "n", 200, "measured connections per mode")
	fs.IntVar(&f.warmup, "warmup", 2, "unmeasured connections per mode first (the first caches the TFO cookie)")
	fs.IntVar(&f.conc, "concurrency", 1, "connections in flight at once")
	fs.IntVar(&f.perConn, "requests-per-conn", 1, "HTTP requests per connection (keep-alive); 1 measures new connections only")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "time limit of one connection")
	fs.DurationVar(&f.labRTT, "lab", 0, "run self-contained in an emulated WAN with this `RTT` (needs root)")
	fs.StringVar(&f.labFault, "lab-fault", "", "with --lab: "+bench.FaultDropSYNData+" or "+bench.FaultStripTFO)
	fs.StringVar(&f.labLoss, "lab-loss", "", "with --lab: random loss of each direction of the client-server link, e.g. 2% or 0.02")
	fs.Uint64Var(&f.labSeed, "lab-seed", 0, "with --lab: seed of the link's random loss (0: from the clock)")
	fs.IntVar(&f.labQLen, "lab-qlen", 0, "with --lab: the server's tcp.fast_open_qlen (default: -c server.json's, else 20)")
	fs.BoolVar(&f.labExact, "lab-exact-qlen", false, "with --lab: the server's TFO queue is exactly --lab-qlen (fastrojan.tfo.exact_qlen)")
	fs.StringVar(&f.mode, "mode", "both", "modes to measure: both (TFO and plain, interleaved), tfo or plain")
	fs.BoolVar(&f.warm, "warm", false, "also measure the warm path: new streams on spare connections from the client's pool")
	fs.BoolVar(&f.asJSON, "json", false, "print the report (with every sample) as JSON")
	fs.StringVar(&f.plotFile, "plot", "", "write the TTFB distribution of both modes to `FILE` (.png or .svg)")
	return fs, f
}

// labConfig says whether -c came with --lab: then it is the server config whose queue the lab uses.
func (f *benchFlags) labConfig() bool { return f.labRTT > 0 && f.path != "" }

// source names the client config measured, for messages: the -c file or the --server link.
func (f *benchFlags) source() string {
	if f.path != "" {
		return f.path
	}
	return "the --server link"
}

// request is what the flags ask for, for bench.Request.Problem.
func (f *benchFlags) request() bench.Request {
	sources := 0
	for _, set := range []bool{f.path != "" && !f.labConfig(), f.link != "", f.labRTT > 0} {
		if set {
			sources++
		}
	}
	labOnly := f.labFault != "" || f.labLoss != "" || f.labSeed != 0 || f.labQLen != 0 || f.labExact
	return bench.Request{Sources: sources, N: f.n, Warmup: f.warmup, Concurrency: f.conc, PerConn: f.perConn,
		Timeout: f.timeout, Lab: f.labRTT > 0, LabOnly: labOnly, URL: f.url, Fault: f.labFault, Mode: f.mode, Plot: f.plotFile}
}

// apply sets the run's counts, modes and limits from the flags.
func (f *benchFlags) apply(opts *bench.Options) {
	opts.N, opts.Warmup, opts.Concurrency, opts.RequestsPerConn, opts.Timeout = f.n, f.warmup, f.conc, f.perConn, f.timeout
	if f.mode != "both" {
		opts.Modes = []string{f.mode}
	}
	opts.Warm = f.warm
	if f.warmup == 0 {
		opts.Warmup = -1 // bench.Options: negative means none
	}
}

// benchLab is a running --lab: the emulated path, the server in it, and the options to measure it.
type benchLab struct {
	path *netlab.Path
	lab  *bench.Lab
	opts bench.Options
	info *bench.LabInfo
}

// startBenchLab opens the emulated WAN of --lab and starts the server and origin in it.
func startBenchLab(f *benchFlags, log *slog.Logger, stderr io.Writer) (*benchLab, int) {
	loss, err := bench.ParseLoss(f.labLoss)
	if err != nil {
		return nil, benchBad(stderr, "--lab-loss: %v", err)
	}
	lopts := bench.LabOptions{Fault: f.labFault, QLen: f.labQLen, ExactQLen: f.labExact}
	if f.labConfig() {
		if err := lopts.FromServerConfig(f.path); err != nil {
			fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
			return nil, exitUsage
		}
	}
	p, err := netlab.OpenPath(netlab.PathOptions{RTT: f.labRTT, Loss: loss, Seed: f.labSeed})
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan bench --lab: %v (the lab needs root on Linux)\n", err)
		return nil, exitFail
	}
	lab, err := bench.StartLabWith(p, lopts, log)
	if err != nil {
		p.Lab.Close()
		fmt.Fprintf(stderr, "fastrojan bench --lab: %v\n", err)
		return nil, exitFail
	}
	bl := &benchLab{path: p, lab: lab, opts: lab.Options(), info: lab.Info()}
	if f.url != "" {
		bl.opts.URL = f.url
	}
	return bl, exitOK
}

// close stops the server and origin, then the emulated path.
func (b *benchLab) close() {
	b.lab.Close()
	b.path.Lab.Close()
}

// benchRemote is the options to measure a real server, named by -c or --server.
func benchRemote(f *benchFlags, log *slog.Logger, stderr io.Writer) (bench.Options, int) {
	cfg, code := benchConfig(f.path, f.link, stderr)
	if code != exitOK {
		return bench.Options{}, code
	}
	tlsCfg, err := tlsconf.ClientTFO(cfg.SSL, cfg.RemoteAddr, log)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
		return bench.Options{}, exitFail
	}
	if f.warm && cfg.Mux.Enabled {
		fmt.Fprintf(stderr, "fastrojan bench --warm: this client config uses trojan-go mux (mux.enabled), whose streams share sessions; --warm measures the pool of spare connections, which a client with mux does not keep\n")
		return bench.Options{}, exitUsage
	}
	// --warm measures the pool this client config keeps (fastrojan.pool), not the defaults.
	po := client.PoolOptions(cfg)
	if f.warm && po.Spares <= 0 {
		fmt.Fprintf(stderr, "fastrojan bench --warm: %s sets fastrojan.pool.spares to 0, so this client keeps no spare connections and has no warm path to measure; drop --warm, or set spares\n", f.source())
		return bench.Options{}, exitUsage
	}
	return bench.Options{Server: cfg.RemoteHostPort(), TLS: tlsCfg, Hash: trojan.HashPassword(cfg.Password[0]), URL: f.url, Pool: &po}, exitOK
}

// benchConfig is the client config of the server to measure: from -c FILE or --server LINK.
func benchConfig(path, link string, stderr io.Writer) (*config.Config, int) {
	if path != "" {
		cfg, err := config.Load(path)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
			return nil, exitUsage
		}
		return cfg, exitOK
	}
	l, err := config.ParseTrojanLink(link)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan bench: %v\n%s\n", err, benchUsage)
		return nil, exitUsage
	}
	return l.ClientConfig("127.0.0.1", 0), exitOK
}

// writeBench prints the report (and plots it) and returns the exit status.
func writeBench(rep *bench.Report, asJSON bool, plotFile string, stdout, stderr io.Writer) int {
	var err error
	if asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
		return exitFail
	}
	if plotFile != "" {
		if err := rep.Plot(plotFile); err != nil {
			fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
			return exitFail
		}
		if !asJSON {
			fmt.Fprintf(stdout, "plot: %s\n", plotFile)
		}
	}
	ok := 0
	for _, m := range rep.Modes {
		ok += m.Successes
	}
	if ok == 0 {
		return exitFail
	}
	return exitOK
}
