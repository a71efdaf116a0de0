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
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listenAddr := fs.String("listen", ":443", "address to listen on")
	stateDir := fs.String("state-dir", statedir.Default(), "where the password and certificates are kept")
	host := fs.String("host", "", "DNS name clients use to reach this server; its certificate comes from --acme-ca (default: this host's first public address, self-signed)")
	fallback := fs.String("fallback", "", "HOST:PORT of the web server probers are handed to (default: a built-in site)")
	selfSigned := fs.Bool("self-signed", false, "use a self-signed certificate instead of ACME (the link then carries allowInsecure=1)")
	acmeCA := fs.String("acme-ca", config.DefaultACMECA, "ACME directory URL of the CA")
	acmeRoot := fs.String("acme-ca-root", "", "PEM `file` with the root of a private ACME CA's HTTPS certificate")
	acmeEmail := fs.String("acme-email", "", "contact address given to the CA (expiry notices)")
	httpListen := fs.String("http-listen", config.DefaultACMEHTTPListen, "where the HTTP-01 challenge server listens (it redirects everything else to https); \"\" for none")
	challenges := fs.String("acme-challenges", "", "comma-separated challenge types to answer: tls-alpn-01, http-01 (default both)")
	noQR := fs.Bool("no-qr", false, "do not draw the link as a QR code")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	level, err := parseLevel(*logLevel)
	if err != nil || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: fastrojan server [--listen :443] [--state-dir DIR] [--host NAME] [--fallback HOST:PORT] [--self-signed] [--acme-ca URL] [--acme-ca-root FILE] [--acme-email ADDR] [--http-listen :80]")
		return exitUsage
	}
	log := newLogger(stderr, level, "text")
	if *host == "" {
		*host = statedir.GuessPublicHost()
	}
	useACME := !*selfSigned && net.ParseIP(*host) == nil
	if useACME {
		if why := config.ValidDomain(*host); why != "" {
			fmt.Fprintf(stderr, "fastrojan server: --host %s: %s.\nGive the public DNS name of this server, or --self-signed for a certificate clients cannot verify.\n", *host, why)
			return exitUsage
		}
	}
	switch {
	case *selfSigned:
		log.Info("self-signed certificate, as asked (--self-signed): clients cannot verify this server; the link carries allowInsecure=1")
	case !useACME:
		log.Info("self-signed certificate: the host is an IP address and ACME CAs issue for DNS names; give --host NAME for a trusted certificate", "host", *host)
	}
	st, err := statedir.LoadOrCreate(*stateDir, *host, !useACME)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan server: %v\n", err)
		return exitFail
	}
	if st.Created {
		log.Info("created password", "state_dir", *stateDir)
	}

	listenHost, listenPort, err := config.SplitHostPort(*listenAddr)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan server: --listen: %v\n", err)
		return exitUsage
	}
	cfg := config.Default("server")
	cfg.LocalAddr, cfg.LocalPort = listenHost, listenPort
	cfg.Password = []string{st.Password}
	cfg.TCP.FastOpen = true // TLS in the SYN is replay-safe (DESIGN.md 3.9); the sysctl decides whether it works
	if useACME {
		cfg.Fastrojan.ACME = config.ACME{Domains: []string{*host}, Email: *acmeEmail, CA: *acmeCA, CARoot: *acmeRoot,
			Storage: filepath.Join(*stateDir, "acme"), HTTPListen: *httpListen, Challenges: splitList(*challenges)}
	} else {
		cfg.SSL.Cert, cfg.SSL.Key = st.CertFile, st.KeyFile
	}

	if *fallback == "" {
		site, err := website.Start("127.0.0.1:0", log)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan server: %v\n", err)
			return exitFail
		}
		defer site.Shutdown(context.Background())
		*fallback = site.Addr()
	}
	if cfg.RemoteAddr, cfg.RemotePort, err = config.SplitHostPort(*fallback); err != nil {
		fmt.Fprintf(stderr, "fastrojan server: --fallback: %v\n", err)
		return exitUsage
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "fastrojan server: %v\n", err)
		return exitUsage
	}

	link := config.TrojanLink{Password: st.Password, Host: *host, Port: listenPort, SNI: *host, AllowInsecure: !useACME, Name: "fastrojan"}
	if useACME {
		log.Info("the link is printed once the certificate is issued", "host", *host, "ca", *acmeCA)
	}
	printLink := func() {
		fmt.Fprintf(stdout, "Trojan link (keep it secret, it holds the password):\n  %s\n", link)
		fmt.Fprintf(stdout, "On the client machine run:\n  fastrojan client '%s'\n", link)
		if !*noQR {
			fmt.Fprintln(stdout, "Or scan it with a phone client:")
			printQR(stdout, link.String())
		}
		fmt.Fprintf(stdout, "Password and certificates are in %s; `fastrojan link --state-dir %s` shows the link again.\n", *stateDir, *stateDir)
		if err := os.WriteFile(filepath.Join(*stateDir, linkFile), []byte(link.String()+"\n"), 0o600); err != nil {
			log.Warn("could not save the link", "err", err)
		}
	}
	if err := runConfig(ctx, cfg, log, printLink); err != nil {
		log.Error("server stopped", "err", err)
		return exitFail
	}
	return exitOK
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
