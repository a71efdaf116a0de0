package doctor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// role says which TFO bits a config needs. With no config both are wanted but neither is required.
type role struct {
	known          bool // a config was given
	client, server bool // this host dials a server with TFO / listens with TFO
	tfoOn          bool // the config switches TFO on for this host's main leg
	serverDial     bool // a server dials targets with TFO
}

func roleOf(cfg *config.Config) role {
	if cfg == nil {
		return role{client: true, server: true, tfoOn: true}
	}
	r := role{known: true}
	if cfg.RunType == config.RunServer {
		r.server, r.tfoOn, r.serverDial = true, cfg.TFOServerListen(), cfg.TFOServerDial()
	} else {
		r.client, r.tfoOn = true, cfg.TFOClient()
	}
	return r
}

// persistLine is the file line that keeps a sysctl across reboots.
func persistLine(key string, v any) string {
	file := strings.ReplaceAll(key[strings.LastIndexByte(key, '.')+1:], "_", "-")
	return fmt.Sprintf("echo %s=%v > /etc/sysctl.d/60-%s.conf   # keep it after reboot", key, v, file)
}

// sysctlFix is the command (and the line that keeps it) enabling client and server TFO.
func sysctlFix(s tfo.Sysctl) string {
	return s.Fix() + "\n" + persistLine(tfo.SysctlKey, int(s|tfo.SysctlClient|tfo.SysctlServer))
}

// SysctlCheck decodes net.ipv4.tcp_fastopen bit by bit against what the config needs, and reports
// the blackhole timeout, somaxconn against fast_open_qlen, MPTCP and the namespace's cookie key.
type SysctlCheck struct {
	Env    Env
	Config *config.Config // nil: no config given
}

// Name implements Check.
func (SysctlCheck) Name() string { return "sysctl" }

// Run implements Check.
func (c SysctlCheck) Run(_ context.Context, out *Out) error {
	v, err := c.Env.SysctlInt(tfo.SysctlKey)
	if err != nil {
		return err
	}
	s := tfo.Sysctl(v)
	out.Logf("%s = %d (%#x): %s", tfo.SysctlKey, v, v, describeTFOBits(v))
	r := roleOf(c.Config)
	sev := func(required bool) Severity {
		switch {
		case !r.tfoOn:
			return Note
		case required:
			return Fail
		}
		return Warn
	}
	fix := sysctlFix(s)
	switch {
	case !r.known && !s.Client() && !s.Server():
		out.Problem(Fail, fix, "TFO is switched off in this network namespace (%s=%d): neither a fastrojan client nor a server here can use it", tfo.SysctlKey, v)
	default:
		if r.client && !s.Client() {
			out.Problem(sev(r.known), fix, "the client bit 0x1 is off: connections from this host to a server cannot carry the TLS ClientHello in the SYN")
		}
		if r.server && !s.Server() {
			out.Problem(sev(r.known), fix, "the server bit 0x2 is off: a fastrojan server here never issues TFO cookies nor accepts SYN data")
		}
		if r.known && r.server && r.serverDial && !s.Client() {
			out.Problem(Warn, fix, "the client bit 0x1 is off: this server's connections to targets cannot carry the client's first bytes in the SYN")
		}
	}
	if s&tfo.SysctlClientNoCookie != 0 {
		out.Report(Note, "bit 0x4 sends SYN data without a cookie to every server: servers without 0x200 refuse it, and a SYN-data-dropping middlebox costs a second every time", "")
	}
	if s&tfo.SysctlServerNoCookie != 0 {
		out.Report(Note, "bit 0x200 accepts SYN data without a cookie: fine for TLS (a replayed ClientHello is harmless), not for plaintext listeners on this host", "")
	}
	if s&tfo.SysctlServerAllListeners != 0 {
		out.Report(Note, "bit 0x400 gives every listener on this host TFO, also those that did not ask for it", "")
	}

	if bh, err := c.Env.SysctlInt("net.ipv4.tcp_fastopen_blackhole_timeout_sec"); err == nil {
		if bh == 0 {
			out.Logf("net.ipv4.tcp_fastopen_blackhole_timeout_sec = 0: the kernel does not detect TFO blackholes (fastrojan watches each server itself)")
		} else {
			out.Logf("net.ipv4.tcp_fastopen_blackhole_timeout_sec = %d: after a detected blackhole the kernel turns client TFO off for every destination for %d s (doubling on repeats)", bh, bh)
		}
	}

	somax, somaxErr := c.Env.SysctlInt("net.core.somaxconn")
	if somaxErr == nil {
		qlen := config.Default(config.RunServer).TCP.FastOpenQLen
		if c.Config != nil && c.Config.TCP.FastOpenQLen > 0 {
			qlen = c.Config.TCP.FastOpenQLen
		}
		out.Logf("net.core.somaxconn = %d, fast_open_qlen = %d", somax, qlen)
		if r.known && r.server && r.tfoOn && qlen > somax {
			out.Problem(Warn, fmt.Sprintf("sysctl -w net.core.somaxconn=%d\n%s\nor in config.json: \"tcp\": {\"fast_open_qlen\": %d}", qlen, persistLine("net.core.somaxconn", qlen), somax),
				"fast_open_qlen %d is above net.core.somaxconn %d: the kernel caps the TFO queue at %d", qlen, somax, somax)
		}
	}

	if mp, err := c.Env.SysctlInt("net.mptcp.enabled"); err == nil {
		if mp != 0 {
			out.Logf("net.mptcp.enabled = %d: Go listeners use MPTCP by default, which changes TFO; fastrojan's TFO listener turns MPTCP off", mp)
		} else {
			out.Logf("net.mptcp.enabled = 0")
		}
	}

	key, err := c.Env.Sysctl("net.ipv4.tcp_fastopen_key")
	switch {
	case err == nil:
		sum := sha256.Sum256([]byte(key))
		out.Logf("net.ipv4.tcp_fastopen_key: the namespace has its own cookie key (fingerprint %s; the key is not shown)", hex.EncodeToString(sum[:4]))
	case errors.Is(err, os.ErrPermission):
		out.Logf("net.ipv4.tcp_fastopen_key: not readable without root")
	}
	return nil
}
