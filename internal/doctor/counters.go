package doctor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// counterInfo names the TcpExt TFO counters and says what each one counts.
var counterInfo = []struct{ name, meaning string }{
	{"TCPFastOpenActive", "client: SYNs with data the server accepted (a round trip saved)"},
	{"TCPFastOpenActiveFail", "client: SYN data not accepted, or the SYN with data timed out"},
	{"TCPFastOpenPassive", "server: connections accepted with data in the SYN"},
	{"TCPFastOpenPassiveFail", "server: SYNs whose cookie did not validate (another node's or an old key)"},
	{"TCPFastOpenListenOverflow", "server: SYN data refused because the TFO queue (fast_open_qlen) was full"},
	{"TCPFastOpenCookieReqd", "server: clients that asked for a cookie"},
	{"TCPFastOpenBlackhole", "client: times the kernel's own blackhole detection switched client TFO off"},
	{"TCPFastOpenPassiveAltKey", "server: cookies accepted by the backup key (during a key rotation)"},
	{"ListenOverflows", "server: connections dropped because a listener's accept queue was full"},
	{"ListenDrops", "server: SYNs and handshake ACKs a listener dropped (overflows included)"},
	{"SyncookiesSent", "server: SYNs answered with a SYN cookie (SYN queue full): those get no TFO"},
}

// DefaultRecentWindow is how long the counters check watches the counters for a recent overflow.
const DefaultRecentWindow = 2 * time.Second

// CountersCheck prints the TcpExt TCPFastOpen* counters of the namespace with their meaning, and
// rates where they say something.
type CountersCheck struct {
	Env    Env
	Config *config.Config
	// Window: the counters are read twice this far apart, so that an overflow happening now is
	// told from one since boot; 0 reads them once.
	Window time.Duration
}

// Name implements Check.
func (CountersCheck) Name() string { return "counters" }

// Run implements Check.
func (c CountersCheck) Run(ctx context.Context, out *Out) error {
	m, err := c.Env.TcpExt()
	if err != nil {
		return err
	}
	var recent map[string]uint64 // growth over Window
	if c.Window > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(c.Window):
			if m2, err := c.Env.TcpExt(); err == nil {
				recent = map[string]uint64{}
				for k, v := range m2 {
					if v >= m[k] {
						recent[k] = v - m[k]
					}
				}
				m = m2
			}
		}
	}
	up, upErr := uptime()
	perHour := func(n uint64) string {
		if n == 0 || upErr != nil || up < time.Minute || c.Env.Do != nil {
			return ""
		}
		return fmt.Sprintf(", %.1f/h since boot", float64(n)/up.Hours())
	}
	for _, ci := range counterInfo {
		v, ok := m[ci.name]
		if !ok {
			out.Logf("%-26s (not in this kernel)", ci.name)
			continue
		}
		out.Logf("%-26s %8d  %s%s", ci.name, v, ci.meaning, perHour(v))
	}
	active, activeFail := m["TCPFastOpenActive"], m["TCPFastOpenActiveFail"]
	if n := active + activeFail; n > 0 {
		out.Logf("client TFO success: %.0f%% of %d attempts", 100*float64(active)/float64(n), n)
		if activeFail >= 10 && activeFail*4 > n {
			out.Report(Warn, fmt.Sprintf("%d of %d client TFO attempts failed: a server refuses cookies or a path drops SYN data (the cookie check names the destination)", activeFail, n),
				"fastrojan doctor --probe SERVER:PORT   # per server: refused, dropped, or accepted")
		}
	}
	passive, passiveFail := m["TCPFastOpenPassive"], m["TCPFastOpenPassiveFail"]
	if n := passive + passiveFail; n > 0 {
		out.Logf("server TFO success: %.0f%% of %d SYNs with a cookie", 100*float64(passive)/float64(n), n)
		if passiveFail >= 10 && passiveFail*4 > n {
			out.Report(Warn, fmt.Sprintf("%d of %d cookies presented to this host did not validate: typical of several servers behind one address with different keys", passiveFail, n),
				farmFix)
		}
	}
	c.overflows(out, m, recent)
	if bh := m["TCPFastOpenBlackhole"]; bh > 0 {
		out.Report(Warn, fmt.Sprintf("the kernel detected a TFO blackhole %d times and switched client TFO off for a while each time", bh),
			"fastrojan doctor --probe SERVER:PORT   # find the path that drops SYN data")
	}
	return nil
}

// overflows reports a full TFO queue or accept queue: as a problem when it happened during the
// check's window (with the exact config line and sysctl that fix it), as a warning when the
// counters only show it since boot.
func (c CountersCheck) overflows(out *Out, m, recent map[string]uint64) {
	somax, _ := c.Env.SysctlInt("net.core.somaxconn")
	configured, exact := config.Default(config.RunServer).TFOQueue()
	if c.Config != nil {
		configured, exact = c.Config.TFOQueue()
	}
	limit := tfo.QueueLen(configured, exact, somax)
	if somax > 0 {
		limit = min(limit, somax)
	}
	fix := tfo.QueueFix(limit, somax, exact)
	if c.Config != nil && c.Config.Path != "" {
		fix = strings.Replace(fix, "config.json", c.Config.Path, 1)
	}
	window := c.Window.Round(time.Millisecond)
	if ov := recent["TCPFastOpenListenOverflow"]; ov > 0 {
		out.Problem(Fail, fix, "the TFO queue overflowed %d times in the last %s (%.1f/s): the kernel refused SYN data and those clients lost the round trip TFO saves; "+
			"the queue in force is about %d (fast_open_qlen %d, exact %v, net.core.somaxconn %d)", ov, window, float64(ov)/c.Window.Seconds(), limit, configured, exact, somax)
	} else if ov := m["TCPFastOpenListenOverflow"]; ov > 0 {
		out.Report(Warn, fmt.Sprintf("the TFO queue overflowed %d times since boot (none in the last %s): those clients lost the round trip TFO saves", ov, window), fix)
	}
	backlogFix := fmt.Sprintf("sysctl -w net.core.somaxconn=%d\n%s\nand sysctl -w net.ipv4.tcp_max_syn_backlog=%d", max(2*somax, 4096), persistLine("net.core.somaxconn", max(2*somax, 4096)), max(2*somax, 4096))
	if n := recent["ListenOverflows"] + recent["SyncookiesSent"]; n > 0 {
		out.Problem(Warn, backlogFix, "the accept queue overflowed or answered with SYN cookies %d times in the last %s (ListenOverflows %d, SyncookiesSent %d): SYNs answered with a cookie get no TFO",
			n, window, recent["ListenOverflows"], recent["SyncookiesSent"])
	}
}
