package cli

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/tfo/farm"
)

// keysCommand is `fastrojan keys`: what a farm's TFO cookie keys are at a moment (by fingerprint), when
// they change, and the sysctl line for other listeners on the same host.
func keysCommand(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "trojan-gfw `config.json` whose fastrojan.farm to use")
	fs.StringVar(cfgPath, "config", "", "same as -c")
	secretFile := fs.String("secret-file", "", "the farm secret `FILE` (instead of -c)")
	rotation := fs.Duration("rotation", farm.DefaultInterval, "rotation interval (with --secret-file; -c takes fastrojan.farm.rotation)")
	skew := fs.Duration("skew", farm.DefaultSkew, "clock-skew tolerance (with --secret-file; -c takes fastrojan.farm.skew)")
	at := fs.String("at", "", "the moment to show: RFC 3339 (2026-11-24T00:00:00Z) or unix seconds (default: now)")
	showKeys := fs.Bool("show-keys", false, "also print the keys themselves and the sysctl line (secret material)")
	sysctl := fs.Bool("sysctl", false, "print only the net.ipv4.tcp_fastopen_key=… line, for sysctl -w (secret material)")
	newSecret := fs.String("new-secret", "", "write a new random farm secret to `FILE` (mode 0600) and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fastrojan keys (-c config.json | --secret-file FILE) [--at TIME] [--show-keys | --sysctl]")
		fmt.Fprintln(stderr, "       fastrojan keys --new-secret FILE")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	if *newSecret != "" {
		if err := farm.NewSecretFile(*newSecret); err != nil {
			fmt.Fprintf(stderr, "fastrojan: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(stdout, "wrote a new farm secret to %s (mode 0600); copy it to every node and set fastrojan.farm.secret_file\n", *newSecret)
		return exitOK
	}
	if (*cfgPath == "") == (*secretFile == "") {
		fmt.Fprintln(stderr, "fastrojan keys: give either -c config.json or --secret-file FILE")
		fs.Usage()
		return exitUsage
	}
	when := time.Now()
	if *at != "" {
		var err error
		if when, err = parseMoment(*at); err != nil {
			fmt.Fprintf(stderr, "fastrojan keys: --at: %v\n", err)
			return exitUsage
		}
	}
	settings := config.Farm{SecretFile: *secretFile, Rotation: config.Duration(*rotation), Skew: config.Duration(*skew)}
	source := *secretFile
	if *cfgPath != "" {
		data, err := os.ReadFile(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan: read config: %v\n", err)
			return exitFail
		}
		// Decode without Validate: the certificates a server needs may not be on this machine.
		cfg, err := config.Decode(data, *cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "fastrojan: %v\n", err)
			return exitFail
		}
		settings = cfg.Fastrojan.Farm
		source = *cfgPath + ": fastrojan.farm.secret"
		if settings.SecretFile != "" {
			source = settings.SecretFile + " (from " + *cfgPath + ")"
		}
	}
	f, err := farm.FromConfig(settings)
	if err != nil {
		fmt.Fprintf(stderr, "fastrojan: %v\n", err)
		return exitFail
	}
	ks := f.KeysAt(when)
	if *sysctl {
		fmt.Fprintln(stdout, ks.SysctlLine())
		return exitOK
	}
	printKeys(stdout, f, source, when, *showKeys)
	return exitOK
}

// parseMoment reads RFC 3339 or unix seconds.
func parseMoment(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2026-11-24T00:00:00Z) nor unix seconds", s)
}

func printKeys(w io.Writer, f *farm.Farm, source string, when time.Time, show bool) {
	const layout = time.RFC3339
	ks := f.KeysAt(when)
	next := f.NextChange(when)
	after := f.KeysAt(next)
	rot := f.NextRotation(when)
	fmt.Fprintf(w, "farm secret:     %s\n", source)
	fmt.Fprintf(w, "rotation:        every %v, clocks tolerated %v either way\n", f.Interval(), f.Skew())
	fmt.Fprintf(w, "at:              %s\n", when.UTC().Format(layout))
	fmt.Fprintf(w, "epoch:           %d (%s to %s)\n", ks.Epoch,
		f.EpochStart(ks.Epoch).Format(layout), f.EpochStart(ks.Epoch+1).Format(layout))
	fmt.Fprintf(w, "primary key:     epoch %d, fingerprint %s (makes and validates cookies)\n", ks.Epoch, ks.Primary.Fingerprint())
	fmt.Fprintf(w, "backup key:      epoch %d, fingerprint %s (validates only)\n", ks.BackupEpoch, ks.Backup.Fingerprint())
	fmt.Fprintf(w, "next change:     %s: primary epoch %d, backup epoch %d\n", next.UTC().Format(layout), after.Epoch, after.BackupEpoch)
	fmt.Fprintf(w, "next rotation:   %s (primary becomes epoch %d)\n", rot.UTC().Format(layout), ks.Epoch+1)
	fmt.Fprintf(w, "cookie lifetime: at least %v on every node\n", f.MinCookieLifetime())
	if !show {
		fmt.Fprintf(w, "sysctl:          %s for other TFO listeners on this host: `fastrojan keys --sysctl …` (it holds the keys; write it again at every change)\n", farm.SysctlName)
		return
	}
	fmt.Fprintf(w, "primary key hex: %s\n", hex.EncodeToString(ks.Primary[:]))
	fmt.Fprintf(w, "backup key hex:  %s\n", hex.EncodeToString(ks.Backup[:]))
	fmt.Fprintf(w, "sysctl:          %s\n", ks.SysctlLine())
}
