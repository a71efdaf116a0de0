package doctor

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tfo/farm"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
)

// farmSecretFile is the path the fix lines suggest for a farm's shared secret.
const farmSecretFile = "/etc/fastrojan/tfo-farm.secret"

// farmFix is how a farm gets one cookie key on every node.
var farmFix = "fastrojan keys --new-secret " + farmSecretFile + "   # once; copy the file to every node (mode 600)\n" +
	`in every node's config.json: "fastrojan": {"farm": {"secret_file": "` + farmSecretFile + `"}}`

// ConfigCheck looks at a config file: whether it switches TFO on, whether a client's TLS key shares
// fit in the SYN, whether a server's listener would get TFO, and whether a server has a farm key.
type ConfigCheck struct {
	Env    Env
	Config *config.Config
}

// Name implements Check.
func (ConfigCheck) Name() string { return "config" }

// Run implements Check.
func (c ConfigCheck) Run(_ context.Context, out *Out) error {
	cfg := c.Config
	name := cfg.Path
	if name == "" {
		name = "config.json"
	}
	out.Logf("%s: run_type %s, tcp.fast_open %v, fast_open_qlen %d", name, cfg.RunType, cfg.TCP.FastOpen, cfg.TCP.FastOpenQLen)
	leg, key, on := "client", cfg.Fastrojan.TFO.Client, cfg.TFOClient()
	if cfg.RunType == config.RunServer {
		leg, key, on = "server_listen", cfg.Fastrojan.TFO.ServerListen, cfg.TFOServerListen()
		if !cfg.TFOServerDial() {
			out.Logf("the server dials targets without TFO (fastrojan.tfo.server_dial or tcp.fast_open is off)")
		}
	}
	switch {
	case on:
	case key != nil:
		out.Problem(Fail, `in `+name+`: "fastrojan": {"tfo": {"`+leg+`": true}}`, "TFO is switched off for this leg in this config (fastrojan.tfo.%s is false)", leg)
	default:
		out.Problem(Fail, `in `+name+`: "tcp": {"fast_open": true}`, "TFO is switched off in this config (tcp.fast_open is false)")
	}
	if cfg.RunType == config.RunServer {
		c.server(out, name)
	} else {
		c.client(out, name)
	}
	return nil
}

func (c ConfigCheck) client(out *Out, name string) {
	cfg := c.Config
	tlsCfg, err := tlsconf.ClientTFO(cfg.SSL, cfg.RemoteAddr, nil)
	if err != nil {
		out.Problem(Warn, "", "cannot build the TLS client config to measure its ClientHello: %v", err)
		return
	}
	limit := tfo.MaxSYNData(cfg.RemoteHostPort())
	n, err := tlsconf.MeasureClientHello(tlsCfg)
	if err != nil {
		out.Problem(Warn, "", "cannot measure the ClientHello: %v", err)
		return
	}
	out.Logf("TLS ClientHello %d bytes with groups %s; the SYN to %s carries at most %d", n, groupNames(tlsCfg.CurvePreferences), cfg.RemoteHostPort(), limit)
	if n > limit {
		out.Problem(Fail, `in `+name+`: "ssl": {"curves": "X25519:P-256"}   (or leave ssl.curves empty)`,
			"the ClientHello (%d bytes) does not fit in the SYN (%d): TFO sends a SYN with part of it and saves no round trip", n, limit)
	}
}

func (c ConfigCheck) server(out *Out, name string) {
	cfg := c.Config
	if !cfg.TFOServerListen() {
		return
	}
	s, err := c.Env.SysctlInt(tfo.SysctlKey)
	switch {
	case err != nil:
		out.Logf("cannot read %s: %v", tfo.SysctlKey, err)
	case !tfo.Sysctl(s).Server():
		out.Problem(Fail, sysctlFix(tfo.Sysctl(s)), "the listener on %s would not get TFO: %s=%d lacks the server bit 0x2", cfg.LocalHostPort(), tfo.SysctlKey, s)
	default:
		out.Logf("the listener on %s gets TFO (queue %d, MPTCP off)", cfg.LocalHostPort(), cfg.TCP.FastOpenQLen)
	}
	ids := tlsconf.CurvePreferences(cfg.SSL)
	if ids != nil && !slices.Contains(ids, tls.X25519) {
		out.Problem(Warn, `in `+name+`: "ssl": {"curves": "X25519:`+cfg.SSL.Curves+`"}`,
			"ssl.curves (%s) lacks X25519, the key share TFO clients send: every handshake takes an extra round trip (HelloRetryRequest)", cfg.SSL.Curves)
	}
}

func groupNames(ids []tls.CurveID) string {
	if len(ids) == 0 {
		return "Go defaults"
	}
	s := ""
	for i, id := range ids {
		if i > 0 {
			s += ":"
		}
		s += id.String()
	}
	return s
}

// FarmCheck says whether a server shares its TFO cookie key with the other nodes of a farm.
type FarmCheck struct {
	Config *config.Config
}

// Name implements Check.
func (FarmCheck) Name() string { return "farm" }

// Run implements Check.
func (c FarmCheck) Run(_ context.Context, out *Out) error {
	f := c.Config.Fastrojan.Farm
	if f.Configured() {
		src := "inline secret"
		if f.SecretFile != "" {
			src = "secret file " + f.SecretFile
			if err := config.SecretFileMode(f.SecretFile); err != nil {
				out.Problem(Fail, fmt.Sprintf("chmod 600 %s", f.SecretFile), "farm secret: %v", err)
				return nil
			}
		}
		out.Logf("TFO cookie keys derived from the farm's %s, rotated every %s (clock skew tolerated: %s); every node with the same secret accepts every node's cookies",
			src, f.Rotation, f.Skew)
		return nil
	}
	out.Report(Note, farm.ErrNoSecret.Error(), farmFix)
	return nil
}
