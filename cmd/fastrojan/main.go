// Command fastrojan is a Trojan proxy server and client built around TCP Fast Open.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/fastrojan/fastrojan/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
