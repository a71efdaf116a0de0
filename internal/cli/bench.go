package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fastrojan/fastrojan/internal/bench"
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
	labLoss := fs.String("lab-loss", "", "with --lab: random loss of each direction of the client-server link, e.g. 2% or 0.02")
	labSeed := fs.Uint64("lab-seed", 0, "with --lab: seed of the link's random loss (0: from the clock)")
	labQLen := fs.Int("lab-qlen", 0, "with --lab: the server's tcp.fast_open_qlen (default: -c server.json's, else 20)")
	labExact := fs.Bool("lab-exact-qlen", false, "with --lab: the server's TFO queue is exactly --lab-qlen (fastrojan.tfo.exact_qlen)")
	mode := fs.String("mode", "both", "modes to measure: both (TFO and plain, interleaved), tfo or plain")
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
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	sources := 0
	labConfig := *labRTT > 0 && *path != "" // -c with --lab: the server config whose queue the lab uses
	for _, set := range []bool{*path != "" && !labConfig, *link != "", *labRTT > 0} {
		if set {
			sources++
		}
	}
	labOnly := *labFault != "" || *labLoss != "" || *labSeed != 0 || *labQLen != 0 || *labExact
	if msg := benchFlagsProblem(sources, *n, *conc, *perConn, *warmup, *timeout, *labRTT > 0, labOnly, *url, *labFault, *mode, *plotFile); msg != "" {
		return bad("%s", msg)
	}
	log := newLogger(stderr, slog.LevelWarn, "text")

	var opts bench.Options
	var labInfo *bench.LabInfo
	switch {
	case *labRTT > 0:
		loss, err := parseLoss(*labLoss)
		if err != nil {
			return bad("--lab-loss: %v", err)
		}
		lopts := bench.LabOptions{Fault: *labFault, QLen: *labQLen, ExactQLen: *labExact}
		if labConfig {
			if err := labQueueFromConfig(*path, &lopts); err != nil {
				fmt.Fprintf(stderr, "fastrojan bench: %v\n", err)
				return exitUsage
			}
		}
		p, err := netlab.OpenPath(netlab.PathOptions{RTT: *labRTT, Loss: loss, Seed: *labSeed})
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan bench --lab: %v (the lab needs root on Linux)\n", err)
			return exitFail
		}
		defer p.Lab.Close()
		lab, err := bench.StartLabWith(p, lopts, log)
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
	if *mode != "both" {
		opts.Modes = []string{*mode}
	}
	opts.Warm = *warm
	if *warmup == 0 {
		opts.Warmup = -1 // bench.Options: negative means none
	}
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
	return writeBench(rep, *asJSON, *plotFile, stdout, stderr)
}

// benchFlagsProblem says what is wrong with bench's flags, "" if nothing. labOnly: a flag that
// needs --lab was given.
func benchFlagsProblem(sources, n, conc, perConn, warmup int, timeout time.Duration, lab, labOnly bool, url, labFault, mode, plotFile string) string {
	switch {
	case sources != 1:
		return "give exactly one of -c, --server and --lab"
	case n < 1 || conc < 1 || perConn < 1 || warmup < 0 || timeout <= 0:
		return "-n, --concurrency and --requests-per-conn must be ≥ 1, --warmup ≥ 0"
	case !lab && url == "":
		return "--url is required with -c or --server"
	case labOnly && !lab:
		return "--lab-fault, --lab-loss, --lab-seed, --lab-qlen and --lab-exact-qlen need --lab"
	case mode != "both" && mode != bench.ModeTFO && mode != bench.ModePlain:
		return "--mode wants both, tfo or plain"
	case plotFile != "" && !strings.HasSuffix(plotFile, ".png") && !strings.HasSuffix(plotFile, ".svg"):
		return "--plot wants a .png or .svg file name"
	}
	if _, err := bench.ParseFault(labFault); err != nil {
		return err.Error()
	}
	return ""
}

// labQueueFromConfig sets the lab server's TFO queue from a server config file: only its queue
// settings matter, so it is decoded strictly but not validated as a whole. --lab-qlen wins.
func labQueueFromConfig(path string, lopts *bench.LabOptions) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	cfg, err := config.Decode(raw, path)
	if err != nil {
		return err
	}
	q, exact := cfg.TFOQueue()
	if lopts.QLen == 0 {
		lopts.QLen = q
	}
	lopts.ExactQLen = lopts.ExactQLen || exact
	return nil
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

// parseLoss reads a loss probability: "2%" or "0.02"; "" is none.
func parseLoss(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	pct := strings.HasSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if pct {
		v /= 100
	}
	if v < 0 || v > 1 {
		return 0, fmt.Errorf("%q is outside 0..100%%", s)
	}
	return v, nil
}
