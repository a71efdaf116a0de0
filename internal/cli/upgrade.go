package cli

import (
	"context"
	"log/slog"
	"net"
	"os"

	"github.com/fastrojan/fastrojan/internal/handoff"
)

// inheritedListener is the listener a previous process handed over for addr on an upgrade (see
// internal/handoff), or nil.
func inheritedListener(addr string, log *slog.Logger) (net.Listener, error) {
	ln, err := handoff.Listener(addr)
	if ln != nil {
		log.Info("serving on the listener handed over by the previous process", "addr", addr)
	}
	return ln, err
}

// onUpgrade starts the binary anew on SIGUSR2, handing it lns (config address → listener: the
// server's and the metrics endpoint's); once the new process serves it calls drain, which stops this
// one accepting and lets its tunnels finish. stop ends the watch.
func onUpgrade(lns map[string]net.Listener, log *slog.Logger, drain func()) (stop func()) {
	return onUpgradeSignal(func() {
		path, err := handoff.Executable()
		if err != nil {
			log.Error("upgrade failed; still serving", "err", err)
			return
		}
		log.Info("upgrade: starting the new binary with the listener", "path", path)
		ctx, cancel := context.WithTimeout(context.Background(), handoff.DefaultReadyTimeout)
		defer cancel()
		p, err := handoff.Upgrade(ctx, path, os.Args[1:], lns, nil, nil)
		if err != nil {
			log.Error("upgrade failed; still serving", "err", err)
			return
		}
		log.Info("upgrade: the new process serves; this one stops accepting and drains its connections", "new_pid", p.Pid)
		drain()
	})
}
