package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
)

// Request is what `fastrojan bench` was asked for on its command line, checked by Problem before
// anything starts.
type Request struct {
	// Sources counts the servers named: -c, --server and --lab (a -c given with --lab is the lab
	// server's config, not a server to measure, and does not count).
	Sources                         int
	N, Warmup, Concurrency, PerConn int
	Timeout                         time.Duration
	Lab                             bool // --lab was given
	LabOnly                         bool // a flag that needs --lab was given
	URL, Fault, Mode, Plot          string
}

// Problem says what is wrong with the request, "" if nothing.
func (r Request) Problem() string {
	switch {
	case r.Sources != 1:
		return "give exactly one of -c, --server and --lab"
	case r.N < 1 || r.Concurrency < 1 || r.PerConn < 1 || r.Warmup < 0 || r.Timeout <= 0:
		return "-n, --concurrency and --requests-per-conn must be ≥ 1, --warmup ≥ 0"
	case !r.Lab && r.URL == "":
		return "--url is required with -c or --server"
	case r.LabOnly && !r.Lab:
		return "--lab-fault, --lab-loss, --lab-seed, --lab-qlen and --lab-exact-qlen need --lab"
	case r.Mode != "both" && r.Mode != ModeTFO && r.Mode != ModePlain:
		return "--mode wants both, tfo or plain"
	case r.Plot != "" && !strings.HasSuffix(r.Plot, ".png") && !strings.HasSuffix(r.Plot, ".svg"):
		return "--plot wants a .png or .svg file name"
	}
	if _, err := ParseFault(r.Fault); err != nil {
		return err.Error()
	}
	return ""
}

// ParseLoss reads a loss probability: "2%" or "0.02"; "" is none.
func ParseLoss(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	pct := strings.HasSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if pct {
		v /= 100
	}
	if v < 0 || v > 1 {
		return 0, fmt.Errorf("%q is outside 0..100%%", s)
	}
	return v, nil
}

// FromServerConfig takes the lab server's TFO queue and TLS settings (session resumption, curves,
// ALPN, ciphers; not the certificate, the lab makes its own) from a server config file: only those
// matter, so it is decoded strictly but not validated as a whole. A QLen already set wins.
func (o *LabOptions) FromServerConfig(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	cfg, err := config.Decode(raw, path)
	if err != nil {
		return err
	}
	q, exact := cfg.TFOQueue()
	if o.QLen == 0 {
		o.QLen = q
	}
	o.ExactQLen = o.ExactQLen || exact
	ssl := cfg.SSL
	o.SSL = &ssl
	return nil
}
