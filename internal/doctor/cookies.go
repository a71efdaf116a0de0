package doctor

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/tcpmetrics"
)

// maxCookieLines bounds how many cache entries the check prints.
const maxCookieLines = 20

// CookiesCheck lists the kernel's TFO cookie cache (the tcp_metrics generic netlink family):
// destination, source, cookie present, fastopen MSS and SYN drops, and flags paths that drop SYN
// data.
type CookiesCheck struct {
	Env    Env
	Config *config.Config // a client config's server is looked up first
}

// Name implements Check.
func (CookiesCheck) Name() string { return "cookies" }

// Run implements Check.
func (c CookiesCheck) Run(_ context.Context, out *Out) error {
	var entries []tcpmetrics.Entry
	if err := c.Env.do(func() (err error) { entries, err = tcpmetrics.Dump(); return err }); err != nil {
		return err
	}
	var withCookie int
	for _, e := range entries {
		if e.HasCookie() {
			withCookie++
		}
	}
	out.Logf("%d destinations cached, %d with a TFO cookie", len(entries), withCookie)
	server := c.serverAddrs()
	// Entries that matter first: the configured server, then those with TFO state, newest first.
	slices.SortStableFunc(entries, func(a, b tcpmetrics.Entry) int {
		ra, rb := rank(a, server), rank(b, server)
		if ra != rb {
			return ra - rb
		}
		return int(a.Age - b.Age)
	})
	shown := 0
	for _, e := range entries {
		if !e.HasCookie() && e.SYNDrops == 0 && !slices.Contains(server, e.Dst) {
			continue
		}
		if shown == maxCookieLines {
			out.Logf("... %d more", len(entries)-shown)
			break
		}
		shown++
		out.Logf("%s", describeEntry(e))
	}
	if c.Config != nil && c.Config.RunType != config.RunServer && len(server) > 0 {
		found := false
		for _, e := range entries {
			if slices.Contains(server, e.Dst) && e.HasCookie() {
				found = true
			}
		}
		if !found {
			out.Logf("no cookie cached for the server %s yet: the next connection asks for one", c.Config.RemoteHostPort())
		}
	}
	for _, e := range entries {
		if e.SYNDrops == 0 {
			continue
		}
		out.Report(Warn, fmt.Sprintf("the path to %s dropped %d SYN(s) carrying data (last %s ago): each such connection waited about a second for a retransmit",
			e.Dst, e.SYNDrops, e.SYNDropAge.Round(1e9)),
			fmt.Sprintf("fastrojan doctor --probe %s   # confirm; if it says dropped, set \"tcp\": {\"fast_open\": false} in the client's config.json for this server", hostPortFor(e.Dst, c.Config)))
	}
	return nil
}

func rank(e tcpmetrics.Entry, server []netip.Addr) int {
	switch {
	case slices.Contains(server, e.Dst):
		return 0
	case e.SYNDrops > 0:
		return 1
	case e.HasCookie():
		return 2
	}
	return 3
}

func describeEntry(e tcpmetrics.Entry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", e.Dst)
	if e.Src.IsValid() {
		fmt.Fprintf(&b, " from %s", e.Src)
	}
	if e.HasCookie() {
		fmt.Fprintf(&b, ": cookie yes (%d bytes)", len(e.Cookie))
	} else {
		b.WriteString(": cookie no")
	}
	if e.FastOpenMSS > 0 {
		fmt.Fprintf(&b, ", fastopen MSS %d", e.FastOpenMSS)
	}
	fmt.Fprintf(&b, ", SYN drops %d", e.SYNDrops)
	if e.SYNDrops > 0 {
		fmt.Fprintf(&b, " (last %s ago)", e.SYNDropAge.Round(1e9))
	}
	fmt.Fprintf(&b, ", updated %s ago", e.Age.Round(1e9))
	return b.String()
}

// serverAddrs resolves a client config's server address (IP literals only: doctor makes no DNS
// queries for this).
func (c CookiesCheck) serverAddrs() []netip.Addr {
	if c.Config == nil || c.Config.RunType == config.RunServer {
		return nil
	}
	if a, err := netip.ParseAddr(c.Config.RemoteAddr); err == nil {
		return []netip.Addr{a.Unmap()}
	}
	return nil
}

func hostPortFor(a netip.Addr, cfg *config.Config) string {
	port := "443"
	if cfg != nil && cfg.RunType != config.RunServer && cfg.RemotePort > 0 {
		port = fmt.Sprint(cfg.RemotePort)
	}
	return net.JoinHostPort(a.String(), port)
}
