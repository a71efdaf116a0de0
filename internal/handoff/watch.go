package handoff

import (
	"context"
	"log/slog"
	"net"
	"os"

	"github.com/fastrojan/fastrojan/internal/service"
)

// OnUpgrade starts the binary anew on every SIGUSR2, handing it lns (config address → listener: the
// server's and the metrics endpoint's); once the new process serves, it calls drain, which stops this
// process accepting and lets its tunnels finish. A failed upgrade is logged and this process serves
// on. stop ends the watch.
func OnUpgrade(lns map[string]net.Listener, log *slog.Logger, drain func()) (stop func()) {
	return service.OnUpgrade(func() {
		path, err := Executable()
		if err != nil {
			log.Error("upgrade failed; still serving", "err", err)
			return
		}
		log.Info("upgrade: starting the new binary with the listener", "path", path)
		ctx, cancel := context.WithTimeout(context.Background(), DefaultReadyTimeout)
		defer cancel()
		p, err := Upgrade(ctx, path, os.Args[1:], lns, nil, nil)
		if err != nil {
			log.Error("upgrade failed; still serving", "err", err)
			return
		}
		log.Info("upgrade: the new process serves; this one stops accepting and drains its connections", "new_pid", p.Pid)
		drain()
	})
}
