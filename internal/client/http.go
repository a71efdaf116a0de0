package client

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/fastrojan/fastrojan/internal/inbound"
)

// handleHTTP serves an HTTP proxy request on the SOCKS5 port: CONNECT becomes a tunnel (answered at
// once, as SOCKS5 is, so the application's first bytes ride with the Trojan header); a request with
// an absolute http:// URI is rewritten to origin form and sent as the tunnel's first payload.
func (c *Client) handleHTTP(app net.Conn, br *bufio.Reader, start time.Time, log *slog.Logger) {
	req, err := inbound.ReadHTTPProxy(br)
	if err != nil {
		c.failed.Add(1)
		code := 400
		if errors.Is(err, inbound.ErrHTTPHeadTooLarge) {
			code = 431
		}
		_ = inbound.WriteHTTPError(app, code, err.Error())
		log.Debug("http proxy request rejected", "err", err)
		return
	}
	log = log.With("dest", req.Dest.String(), "inbound", "http")
	if req.Connect {
		answer := func() error { _, err := io.WriteString(app, inbound.HTTPConnectOK); return err }
		_ = c.tunnel(app, br, req.Dest, nil, answer, start, log)
		return
	}
	if err := c.tunnel(app, br, req.Dest, req.Head, nil, start, log); err != nil {
		_ = app.SetWriteDeadline(time.Now().Add(c.opts.InboundTimeout))
		_ = inbound.WriteHTTPError(app, 502, "fastrojan could not reach "+req.Dest.String()+" through the Trojan server")
	}
}
