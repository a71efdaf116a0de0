package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/fastrojan/fastrojan/internal/client"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/handoff"
	"github.com/fastrojan/fastrojan/internal/memtrim"
	"github.com/fastrojan/fastrojan/internal/metrics"
	"github.com/fastrojan/fastrojan/internal/server"
	"github.com/fastrojan/fastrojan/internal/service"
	"github.com/fastrojan/fastrojan/internal/statedir"
)

// runCommand is `fastrojan run -c FILE` and trojan-gfw's `fastrojan -c FILE` / `-t -c FILE`.
func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "trojan-gfw `config.json` to run")
	fs.StringVar(path, "config", "", "same as -c")
	test := fs.Bool("t", false, "check the config and exit")
	fs.BoolVar(test, "test", false, "same as -t")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: fastrojan [run] -c config.json [-t]")
		return exitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan: %v\n", err)
		return exitFail
	}
	if *test {
		fmt.Fprintf(stdout, "%s: ok (run_type %s)\n", *path, cfg.RunType)
		return exitOK
	}
	log := newLogger(stderr, config.LevelFromTrojan(cfg.LogLevel), cfg.Fastrojan.LogFormat)
	if err := runConfig(ctx, cfg, log, nil); err != nil {
		log.Error("fastrojan stopped", "err", err)
		return exitFail
	}
	return exitOK
}

// runConfig runs the service a config describes until ctx ends, then stops it within
// fastrojan.shutdown_timeout. A server calls onReady (optional) once it listens with its certificate
// in place (for ACME: once the CA has issued it).
func runConfig(ctx context.Context, cfg *config.Config, log *slog.Logger, onReady func()) error {
	m, endpoint, metricsLn, err := metrics.Serve(cfg.Fastrojan.MetricsListen, cfg.Fastrojan.Pprof, log)
	if err != nil {
		return err
	}
	var svc interface{ Parts() []service.Part }
	if cfg.RunType == config.RunServer {
		var a *server.Assembly
		if a, err = server.FromConfig(cfg, server.Env{Log: log, Metrics: m, StateDir: statedir.Default(), OnReady: onReady}); err == nil {
			svc = a
			var drain context.CancelFunc
			ctx, drain = context.WithCancel(ctx)
			defer drain()
			handOver := map[string]net.Listener{cfg.LocalHostPort(): a.Listener}
			if metricsLn != nil {
				handOver[cfg.Fastrojan.MetricsListen] = metricsLn
			}
			defer handoff.OnUpgrade(handOver, log, func() { // SIGUSR2: hand the listeners to a new binary
				a.Server.StopAccepting(a.Listener) // every connection taken off the socket is served, then the drain
				drain()
			})()
			if err := handoff.Ready(); err != nil { // started by an upgrade: the previous process may drain now
				log.Warn("could not tell the previous process that this one serves", "err", err)
			}
		}
	} else {
		svc, err = client.FromConfig(cfg, client.Env{Log: log, Metrics: m})
	}
	if err != nil {
		_ = service.Start(log, endpoint).Close(0) // the endpoint stops at once
		return err
	}
	// The trimmer gives the heap a burst of tunnels left behind back to the system once the process
	// goes quiet (idle tunnels then cost their live memory, not twice it).
	trim := memtrim.New(memtrim.Options{Log: log})
	trimmer := service.Part{Name: "memory trim", Run: trim.Run, Stop: trim.Stop}
	return service.Run(ctx, log, shutdownTimeout(cfg), append([]service.Part{endpoint, trimmer}, svc.Parts()...)...)
}

func shutdownTimeout(cfg *config.Config) time.Duration {
	if d := time.Duration(cfg.Fastrojan.ShutdownTimeout); d > 0 {
		return d
	}
	return 10 * time.Second
}
