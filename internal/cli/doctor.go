package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/doctor"
)

// doctorCommand is `fastrojan doctor [-c config.json] [--probe HOST:PORT] [--json]`: will TCP Fast
// Open work here, and what to type if not. Exit status 0: it can; 1: it cannot as configured; 2:
// usage.
func doctorCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const usage = "usage: fastrojan doctor [-c config.json] [--probe HOST:PORT] [--json] [--timeout 15s]"
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	path := fs.String("c", "", "trojan-gfw `config.json` to check against (server or client)")
	fs.StringVar(path, "config", "", "same as -c")
	probe := fs.String("probe", "", "a server's `HOST:PORT` to probe with TFO connections")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	timeout := fs.Duration("timeout", doctor.DefaultTimeout, "time limit of each check")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 || *timeout <= 0 {
		fmt.Fprintln(stderr, usage)
		return exitUsage
	}
	if *probe != "" {
		if _, _, err := net.SplitHostPort(*probe); err != nil {
			fmt.Fprintf(stderr, "fastrojan doctor: --probe %q: want HOST:PORT\n", *probe)
			return exitUsage
		}
	}
	opts := doctor.Options{Probe: *probe}
	if *path != "" {
		data, err := os.ReadFile(*path)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan doctor: %v\n", err)
			return exitUsage
		}
		// Decode without Validate: the config may name files that exist only on the server.
		cfg, err := config.Decode(data, *path)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan doctor: %v\n", err)
			return exitUsage
		}
		cfg.Path = *path
		opts.Config = cfg
	}
	start := time.Now()
	rep := doctor.Run(ctx, doctor.Checks(opts), *timeout)
	var err error
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
		fmt.Fprintf(stdout, "(%d checks in %s)\n", len(rep.Results), time.Since(start).Round(time.Millisecond))
	}
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan doctor: %v\n", err)
		return exitFail
	}
	return rep.ExitCode()
}
