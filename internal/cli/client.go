package cli

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/fastrojan/fastrojan/internal/config"
)

// clientCommand is `fastrojan client LINK`: a SOCKS5 proxy on 127.0.0.1:1080 to the server in LINK.
func clientCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listenAddr := fs.String("listen", "127.0.0.1:1080", "SOCKS5 address for applications")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	// Go's flag package stops at the first non-flag; allow the link first, as the usage shows.
	var link string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		link, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	rest := fs.Args()
	if link == "" && len(rest) == 1 {
		link, rest = rest[0], nil
	}
	level, err := parseLevel(*logLevel)
	if link == "" || len(rest) > 0 || err != nil {
		fmt.Fprintln(stderr, "usage: fastrojan client 'trojan://PASSWORD@HOST:PORT?sni=NAME' [--listen 127.0.0.1:1080]")
		return exitUsage
	}
	l, err := config.ParseTrojanLink(link)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan client: %v\n", err)
		return exitUsage
	}
	host, port, err := config.SplitHostPort(*listenAddr)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan client: --listen: %v\n", err)
		return exitUsage
	}
	cfg := l.ClientConfig(host, port)
	log := newLogger(stderr, level, "text")
	if l.AllowInsecure {
		log.Warn("the link sets allowInsecure: the server's certificate is not verified")
	}
	fmt.Fprintf(stdout, "SOCKS5 proxy on %s; try: curl -x socks5h://%s https://example.com/\n", *listenAddr, *listenAddr)
	if err := runConfig(ctx, cfg, log, nil); err != nil {
		log.Error("client stopped", "err", err)
		return exitFail
	}
	return exitOK
}
