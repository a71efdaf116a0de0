package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/statedir"
)

// linkCommand is `fastrojan link`: the zero-config server's trojan:// link (from its state
// directory), a server config's (-c: its first password, its ACME name or --host, its port), or a link
// given as the argument, as text and as a QR code for phone clients.
func linkCommand(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("link", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", statedir.Default(), "state directory of `fastrojan server`")
	noQR := fs.Bool("no-qr", false, "print the link only")
	cfgPath := fs.String("c", "", "a server's `config.json`: the link for its first password")
	host := fs.String("host", "", "with -c: the name clients connect to (default: the first of fastrojan.acme.domains)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	var raw string
	switch {
	case *cfgPath != "":
		l, err := serverLink(*cfgPath, *host)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan link: %v\n", err)
			return exitFail
		}
		raw = l.String()
	case fs.NArg() == 0:
		b, err := os.ReadFile(filepath.Join(*stateDir, linkFile))
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan link: %v\n(`fastrojan server` saves its link there once it has its certificate; --state-dir DIR names another directory)\n", err)
			return exitFail
		}
		raw = strings.TrimSpace(string(b))
	case fs.NArg() == 1:
		raw = fs.Arg(0)
	default:
		fmt.Fprintln(stderr, "usage: fastrojan link [--state-dir DIR | -c config.json [--host NAME] | 'trojan://...'] [--no-qr]")
		return exitUsage
	}
	l, err := config.ParseTrojanLink(raw)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan link: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s\n", raw)
	if l.AllowInsecure {
		fmt.Fprintln(stdout, "(allowInsecure=1: the client does not verify the server's certificate)")
	}
	if !*noQR {
		printQR(stdout, raw)
	}
	return exitOK
}

// serverLink is the link to the server a config file describes, for its first password.
func serverLink(path, host string) (config.TrojanLink, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return config.TrojanLink{}, err
	}
	if cfg.RunType != config.RunServer {
		return config.TrojanLink{}, fmt.Errorf("%s: run_type %q: -c takes a server's config", path, cfg.RunType)
	}
	if len(cfg.Password) == 0 {
		return config.TrojanLink{}, fmt.Errorf("%s: no password in the file (users from a database have their own)", path)
	}
	if host == "" && cfg.Fastrojan.ACME.Enabled() {
		host = cfg.Fastrojan.ACME.Domains[0]
	}
	if host == "" {
		return config.TrojanLink{}, fmt.Errorf("%s: give --host NAME, the name in the server's certificate that clients connect to", path)
	}
	return config.TrojanLink{Password: cfg.Password[0], Host: host, Port: cfg.LocalPort, SNI: host, Name: "fastrojan"}, nil
}
