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

// benchCommand is `fastrojan bench`: time to first byte through a Trojan server with TFO and
// without, interleaved, against a real server (-c or --server) or in an emulated WAN (--lab RTT).
func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const usage = "usage: fastrojan bench (-c client.json | --server 'trojan://...' | --lab 50ms [--lab-fault drop-syn-data])\n" +
		"                       [--url http://HOST/PATH] [-n 200] [--concurrency 1] [--requests-per-conn 1] [--warm] [--json] [--plot FILE.png|.svg]"
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
	warm := fs.Bool("warm", false, "also measure the warm path: new streams on spare connections from the client's pool")
	asJSON := fs.Bool("json", false, "print the report (with every sample) as JSON")
	plotFile := fs.String("plot", "", "write the TTFB distribution of both modes to `FILE` (.png or .svg)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "fastrojan bench: "+format+"\n%s\n", append(a, usage)...)
		return exitUsage
	}
	sources := 0
	for _, set := range []bool{*path != "", *link != "", *labRTT > 0} {
		if set {
			sources++
		}
	}
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument %q", fs.Arg(0))
	case sources != 1:
		return bad("give exactly one of -c, --server and --lab")
	case *n < 1 || *conc < 1 || *perConn < 1 || *warmup < 0 || *timeout <= 0:
		return bad("-n, --concurrency and --requests-per-conn must be ≥ 1, --warmup ≥ 0")
	case *labRTT == 0 && *url == "":
		return bad("--url is required with -c or --server")
	case *labFault != "" && *labRTT == 0:
		return bad("--lab-fault needs --lab")
	case *plotFile != "" && !strings.HasSuffix(*plotFile, ".png") && !strings.HasSuffix(*plotFile, ".svg"):
		return bad("--plot wants a .png or .svg file name")
	}
	if _, err := bench.ParseFault(*labFault); err != nil {
		return bad("%v", err)
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
	case *path != "":
		cfg, err := config.Load(*path)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
			return exitUsage
		}
		tlsCfg, err := tlsconf.ClientTFO(cfg.SSL, cfg.RemoteAddr, log)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
			return exitFail
		}
		opts = bench.Options{Server: cfg.RemoteHostPort(), TLS: tlsCfg, Hash: trojan.HashPassword(cfg.Password[0]), URL: *url}
	default:
		l, err := parseTrojanLink(*link)
		if err != nil {
			return bad("%v", err)
		}
		ssl := config.Default(config.RunClient).SSL
		ssl.SNI, ssl.Verify = l.SNI, !l.AllowInsecure
		if len(l.ALPN) > 0 {
			ssl.ALPN = l.ALPN
		}
		tlsCfg, err := tlsconf.ClientTFO(ssl, l.Host, log)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
			return exitFail
		}
		opts = bench.Options{Server: fmt.Sprintf("%s:%d", l.Host, l.Port), TLS: tlsCfg, Hash: trojan.HashPassword(l.Password), URL: *url}
		if strings.Contains(l.Host, ":") {
			opts.Server = fmt.Sprintf("[%s]:%d", l.Host, l.Port)
		}
	}
	opts.N, opts.Warmup, opts.Concurrency, opts.RequestsPerConn, opts.Timeout = *n, *warmup, *conc, *perConn, *timeout
	opts.Warm = *warm
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
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
		return exitFail
	}
	if *plotFile != "" {
		if err := rep.Plot(*plotFile); err != nil {
			fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
			return exitFail
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "plot: %s\n", *plotFile)
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
