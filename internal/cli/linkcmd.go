package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// linkCommand is `fastrojan link`: the zero-config server's trojan:// link (from its state
// directory), or a link given as the argument, as text and as a QR code for phone clients.
func linkCommand(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("link", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", defaultStateDir(), "state directory of `fastrojan server`")
	noQR := fs.Bool("no-qr", false, "print the link only")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	var raw string
	switch fs.NArg() {
	case 0:
		b, err := os.ReadFile(filepath.Join(*stateDir, linkFile))
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan link: %v\n(`fastrojan server` saves its link there once it has its certificate; --state-dir DIR names another directory)\n", err)
			return exitFail
		}
		raw = strings.TrimSpace(string(b))
	case 1:
		raw = fs.Arg(0)
	default:
		fmt.Fprintln(stderr, "usage: fastrojan link [--state-dir DIR] [--no-qr] ['trojan://...']")
		return exitUsage
	}
	l, err := parseTrojanLink(raw)
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
