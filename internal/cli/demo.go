package cli

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/fastrojan/fastrojan/internal/demo"
)

// demoCommand is the README's first command: a web page, a server and a client on loopback, with a
// generated certificate and password; it fetches the page through the proxy and reports each fetch.
func demoCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 5, "how many fetches")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	level, err := parseLevel(*logLevel)
	if err != nil || *n < 1 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: fastrojan demo [-n 5] [--log-level warn]")
		return exitUsage
	}
	log := newLogger(stderr, level, "text")
	if err := demo.Run(ctx, *n, stdout, log); err != nil {
		fmt.Fprintf(stderr, "demo failed: %v\n", err)
		return exitFail
	}
	return exitOK
}
