package server

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/tcpopt"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// activatedListener returns the listening socket systemd handed over (socket activation:
// LISTEN_PID, LISTEN_FDS, the socket as fd 3), with TCP Fast Open switched on for it when the config
// asks, as for a socket of our own. ok is false when the process got no socket.
func activatedListener(cfg *config.Config, log *slog.Logger) (ln net.Listener, ok bool, err error) {
	lns, err := activation.Listeners()
	if err != nil {
		return nil, false, fmt.Errorf("systemd socket activation: %w", err)
	}
	if len(lns) == 0 {
		return nil, false, nil
	}
	for _, extra := range lns[1:] {
		if extra != nil {
			log.Warn("systemd handed over more than one socket; only the first is used", "ignored", extra.Addr().String())
			extra.Close()
		}
	}
	tl, isTCP := lns[0].(*net.TCPListener)
	if !isTCP {
		if lns[0] != nil {
			lns[0].Close()
		}
		return nil, false, fmt.Errorf("systemd socket activation: the socket is not a TCP listener: use ListenStream=PORT in the .socket unit")
	}
	log.Info("listening on the socket systemd handed over", "addr", tl.Addr().String(), "config_addr", cfg.LocalHostPort())
	if cfg.TFOServerListen() {
		configured, exact := cfg.TFOQueue()
		qlen := tfo.QueueLen(configured, exact, tfo.ListenBacklog())
		if err := tfo.EnableListener(tl, qlen, log); err != nil {
			log.Warn("TCP Fast Open is off on the socket systemd handed over; accepting without it", "err", err)
		} else {
			log.Info("TCP Fast Open on the listener", "qlen", qlen, "socket_activation", true)
		}
	}
	return tcpopt.WrapListener(cfg.TCP, tl), true, nil
}
