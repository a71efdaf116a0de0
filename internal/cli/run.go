package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/fastrojan/fastrojan/internal/client"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/server"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
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
	if err := runConfig(ctx, cfg, log); err != nil {
		log.Error("fastrojan stopped", "err", err)
		return exitFail
	}
	return exitOK
}

// runConfig runs the service a config describes until ctx ends, then drains it.
func runConfig(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	tel, stopMetrics, err := startMetrics(cfg, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	switch cfg.RunType {
	case "server":
		store, stopUsers, err := buildUsers(cfg, log, tel)
		if err != nil {
			return err
		}
		defer func() { // after the server has drained: the last counts are final
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout(cfg))
			defer cancel()
			stopUsers(ctx)
		}()
		srv, ln, certs, err := buildServer(cfg, log, store, tel)
		if err != nil {
			return err
		}
		farmKeys, err := startFarmKeys(cfg, ln, log, tel) // fastrojan.farm; SIGHUP reloads the secret
		if err != nil {
			ln.Close()
			return err
		}
		defer farmKeys.Close()
		stopReload := onReload(func() {
			if err := certs.Reload(); err != nil {
				log.Error("certificate reload failed; keeping the old one", "err", err)
				return
			}
			log.Info("certificate reloaded", "cert", cfg.SSL.Cert)
		})
		defer stopReload()
		log.Info("server listening", "addr", ln.Addr().String(), "fallback", cfg.RemoteHostPort(), "passwords", len(cfg.Password))
		return serve(ctx, log, shutdownTimeout(cfg), srv, ln)
	case "client":
		cl, ln, err := buildClient(cfg, log, tel)
		if err != nil {
			return err
		}
		log.Info("client listening (SOCKS5)", "addr", ln.Addr().String(), "server", cfg.RemoteHostPort())
		return serve(ctx, log, shutdownTimeout(cfg), cl, ln)
	case "forward":
		return runForward(ctx, cfg, log, tel)
	case "nat":
		return runNAT(ctx, cfg, log, tel)
	default:
		return fmt.Errorf("run_type %q is not supported yet", cfg.RunType)
	}
}

func shutdownTimeout(cfg *config.Config) time.Duration {
	if d := time.Duration(cfg.Fastrojan.ShutdownTimeout); d > 0 {
		return d
	}
	return 10 * time.Second
}

// buildServer makes a server and its listener from cfg.
// tel (optional) receives metrics.
func buildServer(cfg *config.Config, log *slog.Logger, store users.Store, tel ...*telemetry) (*server.Server, net.Listener, *tlsconf.CertStore, error) {
	tlsCfg, certs, err := tlsconf.Server(cfg.SSL, log)
	if err != nil {
		return nil, nil, nil, err
	}
	var plain []byte
	if f := cfg.SSL.PlainHTTPResponse; f != "" {
		if plain, err = os.ReadFile(f); err != nil {
			return nil, nil, nil, fmt.Errorf("%s: $.ssl.plain_http_response: %w", cfg.Path, err)
		}
	}
	ext := cfg.Fastrojan
	srv, err := server.New(server.Options{
		TLSConfig:         tlsCfg,
		Users:             store,
		Fallback:          cfg.RemoteHostPort(),
		FallbackByALPN:    alpnFallbacks(cfg),
		PlainHTTPResponse: plain,
		HandshakeTimeout:  time.Duration(ext.HandshakeTimeout),
		RequestTimeout:    time.Duration(ext.RequestTimeout),
		SpareTimeout:      time.Duration(ext.SpareTimeout),
		IdleTimeout:       time.Duration(ext.IdleTimeout),
		UDPTimeout:        time.Duration(cfg.UDPTimeout) * time.Second,
		MaxConns:          ext.MaxConns,
		Logger:            log,
		Dial:              plainDial(cfg.TCP),
		DialFirst:         serverDialFirst(cfg, log),
		OnConn:            telemetryOf(tel).serverOnConn(),
	})
	if err != nil {
		return nil, nil, nil, err
	}
	telemetryOf(tel).registerServer(srv)
	telemetryOf(tel).registerServerMux(func() (int64, int64, int64) {
		st := srv.Stats()
		return st.MuxSessions, st.MuxStreams, st.MuxBadStreams
	})
	telemetryOf(tel).registerServerUDP(srv)
	ln, err := serverListen(cfg, log)
	if err != nil {
		return nil, nil, nil, err
	}
	return srv, ln, certs, nil
}

// buildClient makes a SOCKS5 client and its listener from cfg.
// tel (optional) receives metrics and every handshake with the server.
func buildClient(cfg *config.Config, log *slog.Logger, tel ...*telemetry) (*client.Client, net.Listener, error) {
	tlsCfg, err := clientTLS(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	ext := cfg.Fastrojan
	out := &outbound.Trojan{
		Server:           cfg.RemoteHostPort(),
		TLS:              tlsCfg,
		Hash:             trojan.HashPassword(cfg.Password[0]),
		HandshakeTimeout: time.Duration(ext.HandshakeTimeout),
		Dial:             clientDial(cfg, log),
		Observe:          telemetryOf(tel).clientObserver(cfg, log),
		Paths:            telemetryOf(tel).clientPaths(cfg, log),
		DialPlain:        plainDial(cfg.TCP),
		PreferIPv4:       cfg.TCP.PreferIPv4,
	}
	cl, err := client.New(client.Options{
		Outbound:         out,
		Pool:             telemetryOf(tel).clientPool(cfg, out, log),
		Mux:              telemetryOf(tel).clientMux(cfg, out, log),
		OnTunnelClosed:   telemetryOf(tel).clientTunnelClosed(),
		FirstPayloadWait: time.Duration(ext.FirstPayloadWait),
		IdleTimeout:      time.Duration(ext.IdleTimeout),
		UDPTimeout:       time.Duration(cfg.UDPTimeout) * time.Second,
		Logger:           log,
	})
	if err != nil {
		return nil, nil, err
	}
	telemetryOf(tel).registerClientUDP(cl)
	telemetryOf(tel).registerClient(cl)
	ln, err := listen(cfg.TCP, cfg.LocalHostPort())
	if err != nil {
		return nil, nil, err
	}
	return cl, ln, nil
}

// alpnFallbacks maps ssl.alpn_port_override (ALPN protocol → port on remote_addr) to fallback
// addresses.
func alpnFallbacks(cfg *config.Config) map[string]string {
	if len(cfg.SSL.ALPNPortOverride) == 0 {
		return nil
	}
	m := make(map[string]string, len(cfg.SSL.ALPNPortOverride))
	for proto, port := range cfg.SSL.ALPNPortOverride {
		m[proto] = net.JoinHostPort(cfg.RemoteAddr, strconv.Itoa(port))
	}
	return m
}

// listen opens a plain TCP listener with trojan-gfw's tcp.* options.
func listen(t config.TCP, addr string) (net.Listener, error) {
	lc := listenConfig(t)
	// Go 1.24+ listens with MPTCP by default, which changes TFO behaviour (DESIGN.md 3.6).
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return withTCPOptions(t, ln), nil
}

// service is what server.Server and client.Client have in common.
type service interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// serve runs svc on ln until ctx ends or Serve fails, then shuts it down within timeout.
func serve(ctx context.Context, log *slog.Logger, timeout time.Duration, svc service, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- svc.Serve(ln) }()
	select {
	case err := <-errc:
		_ = svc.Shutdown(context.Background())
		if err == nil {
			err = errors.New("listener closed")
		}
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "drain_timeout", timeout)
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := svc.Shutdown(sctx)
	<-errc
	if err != nil {
		log.Warn("connections still open at the drain deadline were closed", "err", err)
	}
	return nil
}
