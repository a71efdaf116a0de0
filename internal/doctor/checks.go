package doctor

import (
	"github.com/fastrojan/fastrojan/internal/config"
)

// Options choose the checks Checks returns.
type Options struct {
	Config *config.Config // from -c; nil when none was given
	Probe  string         // --probe HOST:PORT; empty for none
	Env    Env            // where to look; the zero Env is this process's namespace
}

// Checks returns the checks for opts: always the kernel, the sysctls, the counters, the cookie
// cache and the self-test; the config and (for a server) farm checks with a config; the probe
// with an address.
func Checks(opts Options) []Check {
	cs := []Check{
		KernelCheck{},
		SysctlCheck{Env: opts.Env, Config: opts.Config},
		CountersCheck{Env: opts.Env, Config: opts.Config, Window: DefaultRecentWindow},
		CookiesCheck{Env: opts.Env, Config: opts.Config},
		SelfTestCheck{Env: opts.Env, Config: opts.Config},
	}
	if opts.Config != nil {
		cs = append(cs, ConfigCheck{Env: opts.Env, Config: opts.Config})
		if opts.Config.RunType == config.RunServer {
			cs = append(cs, FarmCheck{Config: opts.Config})
		}
	}
	if opts.Probe != "" {
		cs = append(cs, &ProbeCheck{Env: opts.Env, Addr: opts.Probe, Config: opts.Config})
	}
	return cs
}
