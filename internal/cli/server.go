package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/website"
)

// serverCommand is `fastrojan server`: a server with nothing to edit. On first start it creates, in
// a state directory, a self-signed certificate and a random password; it serves a built-in fallback
// site unless --fallback names one.
func serverCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listenAddr := fs.String("listen", ":443", "address to listen on")
	stateDir := fs.String("state-dir", defaultStateDir(), "where the certificate and password are kept")
	host := fs.String("host", "", "name or address clients use to reach this server (default: this host's first public address)")
	fallback := fs.String("fallback", "", "HOST:PORT of the web server probers are handed to (default: a built-in site)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	level, err := parseLevel(*logLevel)
	if err != nil || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: fastrojan server [--listen :443] [--state-dir DIR] [--host NAME] [--fallback HOST:PORT]")
		return exitUsage
	}
	log := newLogger(stderr, level, "text")
	if *host == "" {
		*host = guessPublicHost()
	}
	st, err := loadOrCreateState(*stateDir, *host)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan server: %v\n", err)
		return exitFail
	}
	if st.created {
		log.Info("created certificate and password", "state_dir", *stateDir)
	}

	listenHost, listenPort, err := splitHostPort(*listenAddr)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan server: --listen: %v\n", err)
		return exitUsage
	}
	cfg := config.Default("server")
	cfg.LocalAddr, cfg.LocalPort = listenHost, listenPort
	cfg.Password = []string{st.password}
	cfg.SSL.Cert, cfg.SSL.Key = st.certFile, st.keyFile

	if *fallback == "" {
		site, err := website.Start("127.0.0.1:0", log)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan server: %v\n", err)
			return exitFail
		}
		defer site.Shutdown(context.Background())
		*fallback = site.Addr()
	}
	if cfg.RemoteAddr, cfg.RemotePort, err = splitHostPort(*fallback); err != nil {
		fmt.Fprintf(stderr, "fastrojan server: --fallback: %v\n", err)
		return exitUsage
	}

	link := config.TrojanLink{Password: st.password, Host: *host, Port: listenPort, SNI: *host, AllowInsecure: true, Name: "fastrojan"}
	fmt.Fprintf(stdout, "Trojan link (keep it secret, it holds the password):\n  %s\n", link)
	fmt.Fprintf(stdout, "On the client machine run:\n  fastrojan client '%s'\n", link)
	fmt.Fprintf(stdout, "Certificate and password are in %s; --host changes the name in the link.\n", *stateDir)

	if err := runConfig(ctx, cfg, log); err != nil {
		log.Error("server stopped", "err", err)
		return exitFail
	}
	return exitOK
}

type serverState struct {
	certFile, keyFile, password string
	created                     bool
}

// loadOrCreateState returns the state in dir, creating what is missing: a self-signed certificate
// for host and a random password, readable by the owner only.
func loadOrCreateState(dir, host string) (serverState, error) {
	st := serverState{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	pwFile := filepath.Join(dir, "password")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return st, fmt.Errorf("state directory: %w", err)
	}
	pw, err := os.ReadFile(pwFile)
	switch {
	case err == nil:
		st.password = string(trimNewline(pw))
	case errors.Is(err, fs.ErrNotExist):
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		st.password = hex.EncodeToString(b)
		if err := os.WriteFile(pwFile, []byte(st.password+"\n"), 0o600); err != nil {
			return st, fmt.Errorf("write password: %w", err)
		}
		st.created = true
	default:
		return st, fmt.Errorf("read password: %w", err)
	}
	if st.password == "" {
		return st, fmt.Errorf("%s is empty: delete it to generate a new password", pwFile)
	}
	if _, err := os.Stat(st.certFile); errors.Is(err, fs.ErrNotExist) {
		hosts := []string{host, "localhost", "127.0.0.1", "::1"}
		certPEM, keyPEM, err := tlsconf.GenerateSelfSigned(hosts)
		if err != nil {
			return st, fmt.Errorf("generate certificate: %w", err)
		}
		if err := os.WriteFile(st.keyFile, keyPEM, 0o600); err != nil {
			return st, fmt.Errorf("write key: %w", err)
		}
		if err := os.WriteFile(st.certFile, certPEM, 0o644); err != nil {
			return st, fmt.Errorf("write certificate: %w", err)
		}
		st.created = true
	}
	return st, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// defaultStateDir follows systemd's StateDirectory, then root's /var/lib, then XDG.
func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/fastrojan"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "fastrojan")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "fastrojan")
	}
	return "fastrojan-state"
}

// guessPublicHost returns this host's first global unicast address, preferring a public one, so the
// printed link works from elsewhere; the host name if there is none.
func guessPublicHost() string {
	addrs, _ := net.InterfaceAddrs()
	var private string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || !ipn.IP.IsGlobalUnicast() || ipn.IP.To4() == nil {
			continue
		}
		if !ipn.IP.IsPrivate() {
			return ipn.IP.String()
		}
		if private == "" {
			private = ipn.IP.String()
		}
	}
	if private != "" {
		return private
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "localhost"
}

func splitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, port, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}
