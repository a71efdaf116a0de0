package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/statedir"
	"github.com/fastrojan/fastrojan/internal/website"
)

// serverCommand is `fastrojan server`: a server with nothing to edit. On first start it creates, in
// a state directory, a random password and gets a certificate for --host from an ACME CA (Let's
// Encrypt by default), renewing it while it runs; self-signed only with --self-signed or when the host
// is an IP address. It serves a built-in fallback site unless --fallback names one.
func serverCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newServerFlags(stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	level, err := parseLevel(f.logLevel)
	if err != nil || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: fastrojan server [--listen :443] [--state-dir DIR] [--host NAME] [--fallback HOST:PORT] [--self-signed] [--acme-ca URL] [--acme-ca-root FILE] [--acme-email ADDR] [--http-listen :80]")
		return exitUsage
	}
	log := newLogger(stderr, level, "text")
	if f.host == "" {
		f.host = statedir.GuessPublicHost()
	}
	useACME, code := f.certificateSource(log, stderr)
	if code != exitOK {
		return code
	}
	st, err := statedir.LoadOrCreate(f.stateDir, f.host, !useACME)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan server: %v\n", err)
		return exitFail
	}
	if st.Created {
		log.Info("created password", "state_dir", f.stateDir)
	}
	cfg, stop, code := f.config(st, useACME, log, stderr)
	defer stop()
	if code != exitOK {
		return code
	}

	link := config.TrojanLink{Password: st.Password, Host: f.host, Port: cfg.LocalPort, SNI: f.host, AllowInsecure: !useACME, Name: "fastrojan"}
	if useACME {
		log.Info("the link is printed once the certificate is issued", "host", f.host, "ca", f.acmeCA)
	}
	printLink := func() { f.printLink(link, stdout, log) }
	if err := runConfig(ctx, cfg, log, printLink); err != nil {
		log.Error("server stopped", "err", err)
		return exitFail
	}
	return exitOK
}

// serverFlags are the flags of `fastrojan server`.
type serverFlags struct {
	listenAddr, stateDir, host, fallback string
	acmeCA, acmeRoot, acmeEmail          string
	httpListen, challenges, logLevel     string
	selfSigned, noQR                     bool
}

// newServerFlags defines the flags of `fastrojan server` on a flag set that reports to stderr.
func newServerFlags(stderr io.Writer) (*flag.FlagSet, *serverFlags) {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &serverFlags{}
	fs.StringVar(&f.listenAddr, "listen", ":443", "address to listen on")
	fs.StringVar(&f.stateDir, "state-dir", statedir.Default(), "where the password and certificates are kept")
	fs.StringVar(&f.host, "host", "", "DNS name clients use to reach this server; its certificate comes from --acme-ca (default: this host's first public address, self-signed)")
	fs.StringVar(&f.fallback, "fallback", "", "HOST:PORT of the web server probers are handed to (default: a built-in site)")
	fs.BoolVar(&f.selfSigned, "self-signed", false, "use a self-signed certificate instead of ACME (the link then carries allowInsecure=1)")
	fs.StringVar(&f.acmeCA, "acme-ca", config.DefaultACMECA, "ACME directory URL of the CA")
	fs.StringVar(&f.acmeRoot, "acme-ca-root", "", "PEM `file` with the root of a private ACME CA's HTTPS certificate")
	fs.StringVar(&f.acmeEmail, "acme-email", "", "contact address given to the CA (expiry notices)")
	fs.StringVar(&f.httpListen, "http-listen", config.DefaultACMEHTTPListen, "where the HTTP-01 challenge server listens (it redirects everything else to https); \"\" for none")
	fs.StringVar(&f.challenges, "acme-challenges", "", "comma-separated challenge types to answer: tls-alpn-01, http-01 (default both)")
	fs.BoolVar(&f.noQR, "no-qr", false, "do not draw the link as a QR code")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return fs, f
}

// certificateSource decides between ACME and a self-signed certificate and says which and why. ACME
// needs a valid DNS name as --host.
func (f *serverFlags) certificateSource(log *slog.Logger, stderr io.Writer) (useACME bool, code int) {
	useACME = !f.selfSigned && net.ParseIP(f.host) == nil
	if useACME {
		if why := config.ValidDomain(f.host); why != "" {
			fmt.Fprintf(stderr, "fastrojan server: --host %s: %s.\nGive the public DNS name of this server, or --self-signed for a certificate clients cannot verify.\n", f.host, why)
			return false, exitUsage
		}
	}
	switch {
	case f.selfSigned:
		log.Info("self-signed certificate, as asked (--self-signed): clients cannot verify this server; the link carries allowInsecure=1")
	case !useACME:
		log.Info("self-signed certificate: the host is an IP address and ACME CAs issue for DNS names; give --host NAME for a trusted certificate", "host", f.host)
	}
	return useACME, exitOK
}

// config is the server's config: the state directory's password, TFO on, ACME or the self-signed
// certificate, and the fallback (the built-in site unless --fallback names one, started here; stop
// shuts it down, and is never nil, even with an error).
func (f *serverFlags) config(st statedir.State, useACME bool, log *slog.Logger, stderr io.Writer) (cfg *config.Config, stop func(), code int) {
	stop = func() {}
	listenHost, listenPort, err := config.SplitHostPort(f.listenAddr)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan server: --listen: %v\n", err)
		return nil, stop, exitUsage
	}
	cfg = config.Default("server")
	cfg.LocalAddr, cfg.LocalPort = listenHost, listenPort
	cfg.Password = []string{st.Password}
	cfg.TCP.FastOpen = true // TLS in the SYN is replay-safe (DESIGN.md 3.9); the sysctl decides whether it works
	if useACME {
		cfg.Fastrojan.ACME = config.ACME{Domains: []string{f.host}, Email: f.acmeEmail, CA: f.acmeCA, CARoot: f.acmeRoot,
			Storage: filepath.Join(f.stateDir, "acme"), HTTPListen: f.httpListen, Challenges: splitList(f.challenges)}
	} else {
		cfg.SSL.Cert, cfg.SSL.Key = st.CertFile, st.KeyFile
	}

	fallback := f.fallback
	if fallback == "" {
		site, err := website.Start("127.0.0.1:0", log)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan server: %v\n", err)
			return nil, stop, exitFail
		}
		stop = func() { _ = site.Shutdown(context.Background()) }
		fallback = site.Addr()
	}
	if cfg.RemoteAddr, cfg.RemotePort, err = config.SplitHostPort(fallback); err != nil {
		fmt.Fprintf(stderr, "fastrojan server: --fallback: %v\n", err)
		return nil, stop, exitUsage
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "fastrojan server: %v\n", err)
		return nil, stop, exitUsage
	}
	return cfg, stop, exitOK
}

// printLink prints the server's link (and its QR code) once the server serves, and saves it in the
// state directory for `fastrojan link`.
func (f *serverFlags) printLink(link config.TrojanLink, stdout io.Writer, log *slog.Logger) {
	fmt.Fprintf(stdout, "Trojan link (keep it secret, it holds the password):\n  %s\n", link)
	fmt.Fprintf(stdout, "On the client machine run:\n  fastrojan client '%s'\n", link)
	if !f.noQR {
		fmt.Fprintln(stdout, "Or scan it with a phone client:")
		printQR(stdout, link.String())
	}
	fmt.Fprintf(stdout, "Password and certificates are in %s; `fastrojan link --state-dir %s` shows the link again.\n", f.stateDir, f.stateDir)
	if err := os.WriteFile(filepath.Join(f.stateDir, linkFile), []byte(link.String()+"\n"), 0o600); err != nil {
		log.Warn("could not save the link", "err", err)
	}
}

// linkFile is where `fastrojan server` keeps its link in the state directory, for `fastrojan link`.
const linkFile = "link"

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}
