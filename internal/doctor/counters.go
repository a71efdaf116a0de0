package doctor

import (
	"context"
	"fmt"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
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
}

// CountersCheck prints the TcpExt TCPFastOpen* counters of the namespace with their meaning, and
// rates where they say something.
type CountersCheck struct {
	Env    Env
	Config *config.Config
}

// Name implements Check.
func (CountersCheck) Name() string { return "counters" }

// Run implements Check.
func (c CountersCheck) Run(_ context.Context, out *Out) error {
	m, err := c.Env.TcpExt()
	if err != nil {
		return err
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
	if ov := m["TCPFastOpenListenOverflow"]; ov > 0 {
		q := 20
		if c.Config != nil && c.Config.TCP.FastOpenQLen > 0 {
			q = c.Config.TCP.FastOpenQLen
		}
		out.Report(Warn, fmt.Sprintf("the TFO queue overflowed %d times: those clients lost the round trip TFO saves", ov),
			fmt.Sprintf("in config.json: \"tcp\": {\"fast_open_qlen\": %d}   (and net.core.somaxconn at least as large)", 4*q))
	}
	if bh := m["TCPFastOpenBlackhole"]; bh > 0 {
		out.Report(Warn, fmt.Sprintf("the kernel detected a TFO blackhole %d times and switched client TFO off for a while each time", bh),
			"fastrojan doctor --probe SERVER:PORT   # find the path that drops SYN data")
	}
	return nil
}
