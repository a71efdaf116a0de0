package client

import (
	"bufio"
	"log/slog"
	"net"
	"time"

	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// tunnelMux is tunnel over a trojan-go mux stream: the application is answered, its first bytes
// read, and a stream opened with them on a session to the server (a new session only when none has
// room).
func (c *Client) tunnelMux(app net.Conn, br *bufio.Reader, dest trojan.Addr, head []byte, answer func() error, start time.Time, log *slog.Logger) error {
	if answer != nil {
		if err := answer(); err != nil {
			c.failed.Add(1)
			log.Debug("inbound reply", "err", err)
			return err
		}
	}
	var payload []byte
	if head != nil {
		payload = append(head, c.buffered(br, outbound.MaxFirstPayload-len(head))...)
	} else {
		payload = c.firstPayload(br, app)
	}
	if !c.markRelaying(app) {
		return nil // Shutdown began while this tunnel was being set up
	}
	up, err := c.opts.Mux.Open(c.ctx, trojan.CmdConnect, dest, payload)
	if err != nil {
		c.failed.Add(1)
		log.Warn("mux stream via trojan server failed", "err", err)
		return err
	}
	defer up.Close()
	log.Debug("tunnel open", "setup", time.Since(start).Round(time.Microsecond), "first_payload", len(payload), "mux", true)
	c.relayTunnel(app, br, up, len(payload), start, log)
	return nil
}
