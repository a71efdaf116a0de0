package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/fastrojan/fastrojan/internal/bench"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

const benchUsage = "usage: fastrojan bench (-c client.json | --server 'trojan://...' | --lab 50ms [--lab-fault drop-syn-data])\n" +
	"                       [--url http://HOST/PATH] [-n 200] [--concurrency 1] [--requests-per-conn 1] [--json] [--plot FILE.png|.svg]"

// benchCommand is `fastrojan bench`: time to first byte through a Trojan server with TFO and
// without, interleaved, against a real server (-c or --server) or in an emulated WAN (--lab RTT).
func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const usage = benchUsage
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	path := fs.String("c", "", "client `config.json` naming the server, password and TLS settings")
	link := fs.String("server", "", "the server as a trojan:// `LINK` (instead of -c)")
	url := fs.String("url", "", "http:// `URL` fetched through the server (required unless --lab)")
	n := fs.Int("n", 200, "measured connections per mode")
	warmup := fs.Int("warmup", 2, "unmeasured connections per mode first (the first caches the TFO cookie)")
	conc := fs.Int("concurrency", 1, "connections in flight at once")
	perConn := fs.Int("requests-per-conn", 1, "HTTP requests per connection (keep-alive); 1 measures new connections only")
	timeout := fs.Duration("timeout", 10*time.Second, "time limit of one connection")
	labRTT := fs.Duration("lab", 0, "run self-contained in an emulated WAN with this `RTT` (needs root)")
	labFault := fs.String("lab-fault", "", "with --lab: "+bench.FaultDropSYNData+" or "+bench.FaultStripTFO)
	asJSON := fs.Bool("json", false, "print the report (with every sample) as JSON")
	plotFile := fs.String("plot", "", "write the TTFB distribution of both modes to `FILE` (.png or .svg)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "fastrojan bench: "+format+"\n%s\n", append(a, usage)...)
		return exitUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	sources := 0
	for _, set := range []bool{*path != "", *link != "", *labRTT > 0} {
		if set {
			sources++
		}
	}
	if msg := benchFlagsProblem(sources, *n, *conc, *perConn, *warmup, *timeout, *labRTT > 0, *url, *labFault, *plotFile); msg != "" {
		return bad("%s", msg)
	}
	log := newLogger(stderr, slog.LevelWarn, "text")

	var opts bench.Options
	var labInfo *bench.LabInfo
	switch {
	case *labRTT > 0:
		p, err := netlab.OpenPath(netlab.PathOptions{RTT: *labRTT})
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan bench --lab: %v (the lab needs root on Linux)\n", err)
			return exitFail
		}
		defer p.Lab.Close()
		lab, err := bench.StartLab(p, *labFault, log)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan bench --lab: %v\n", err)
			return exitFail
		}
		defer lab.Close()
		opts, labInfo = lab.Options(), lab.Info()
		if *url != "" {
			opts.URL = *url
		}
	default:
		cfg, code := benchConfig(*path, *link, stderr)
		if code != exitOK {
			return code
		}
		tlsCfg, err := tlsconf.ClientTFO(cfg.SSL, cfg.RemoteAddr, log)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
			return exitFail
		}
		opts = bench.Options{Server: cfg.RemoteHostPort(), TLS: tlsCfg, Hash: trojan.HashPassword(cfg.Password[0]), URL: *url}
	}
	opts.N, opts.Warmup, opts.Concurrency, opts.RequestsPerConn, opts.Timeout = *n, *warmup, *conc, *perConn, *timeout
	if *warmup == 0 {
		opts.Warmup = -1 // bench.Options: negative means none
	}
	prog := newProgress(stderr)
	opts.Progress = prog.update
	rep, err := bench.Run(ctx, opts)
	prog.finish()
	if rep == nil {
		fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
		return exitFail
	}
	rep.Lab = labInfo
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan bench: stopped early: %v\n", err)
	}
	return writeBench(rep, *asJSON, *plotFile, stdout, stderr)
}

// benchFlagsProblem says what is wrong with bench's flags, "" if nothing.
func benchFlagsProblem(sources, n, conc, perConn, warmup int, timeout time.Duration, lab bool, url, labFault, plotFile string) string {
	switch {
	case sources != 1:
		return "give exactly one of -c, --server and --lab"
	case n < 1 || conc < 1 || perConn < 1 || warmup < 0 || timeout <= 0:
		return "-n, --concurrency and --requests-per-conn must be ≥ 1, --warmup ≥ 0"
	case !lab && url == "":
		return "--url is required with -c or --server"
	case labFault != "" && !lab:
		return "--lab-fault needs --lab"
	case plotFile != "" && !strings.HasSuffix(plotFile, ".png") && !strings.HasSuffix(plotFile, ".svg"):
		return "--plot wants a .png or .svg file name"
	}
	if _, err := bench.ParseFault(labFault); err != nil {
		return err.Error()
	}
	return ""
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
	if rep.Mode(bench.ModeTFO).Successes == 0 && rep.Mode(bench.ModePlain).Successes == 0 {
		return exitFail
	}
	return exitOK
}

// progress draws a bar on a terminal and prints a line every 10% otherwise, on stderr.
type progress struct {
	w        io.Writer
	terminal bool
	mu       sync.Mutex
	start    time.Time
	lastPct  int
	drawn    bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, start: time.Now(), lastPct: -1}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.terminal = true
	}
	return p
}

func (p *progress) update(done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pct := 100 * done / max(total, 1)
	if p.terminal {
		const width = 40
		fill := width * done / max(total, 1)
		fmt.Fprintf(p.w, "\r[%s%s] %d/%d connections %3d%% %s ", strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
			done, total, pct, time.Since(p.start).Round(time.Second))
		p.drawn = true
		return
	}
	if pct/10 != p.lastPct/10 || done == total {
		if pct/10 != p.lastPct/10 {
			fmt.Fprintf(p.w, "bench: %d/%d connections (%d%%), %s\n", done, total, pct, time.Since(p.start).Round(time.Second))
		}
		p.lastPct = pct
	}
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
