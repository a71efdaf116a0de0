// Package cli is fastrojan's command line: one file per subcommand, with its flags, output and exit
// codes. Services are built by server.FromConfig and client.FromConfig and run by service.Run;
// the work itself lives in the packages below.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Version is set at build time with -ldflags "-X github.com/fastrojan/fastrojan/internal/cli.Version=...".
var Version = "dev"

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run a trojan-gfw config.json (same as: fastrojan -c FILE)", runCommand},
		{"server", "run a server with generated certificate, password and fallback site", serverCommand},
		{"client", "run a SOCKS5 client from a trojan:// link", clientCommand},
		{"link", "show the server's trojan:// link as text and QR code", linkCommand},
		{"demo", "server, client and web page on loopback; fetch through the proxy and report", demoCommand},
		{"lab", "emulated WAN in network namespaces (root): lab up | lab down", labCommand},
		{"doctor", "will TCP Fast Open work here? checks with the fix for each problem", doctorCommand},
		{"bench", "time to first byte with and without TFO, interleaved (--lab RTT: self-contained)", benchCommand},
		{"keys", "a server farm's TFO cookie keys: epoch, fingerprints, next rotation, sysctl line", keysCommand},
		{"version", "print the version", versionCommand},
	}
}

// Run is the whole program: it returns the process exit status.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	// trojan-gfw's own command line: fastrojan -c config.json, fastrojan -t -c config.json.
	if strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-h", "-help", "--help":
			usage(stdout)
			return exitOK
		case "-v", "-version", "--version":
			return versionCommand(ctx, nil, stdout, stderr)
		}
		return runCommand(ctx, args, stdout, stderr)
	}
	if args[0] == "help" {
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "fastrojan: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "fastrojan: a Trojan proxy built around TCP Fast Open")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage:")
	fmt.Fprintln(w, "  fastrojan -c config.json        run a trojan-gfw config (-t: only check it)")
	fmt.Fprintln(w, "  fastrojan COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'fastrojan COMMAND -h' for a command's flags.")
}

func versionCommand(_ context.Context, _ []string, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "fastrojan %s\n", Version)
	return exitOK
}

// newLogger writes to w at level, as text (default) or JSON.
func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
