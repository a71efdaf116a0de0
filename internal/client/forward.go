package client

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/fastrojan/fastrojan/internal/inbound"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// ServeForward accepts on ln and forwards every connection to target through the server
// (trojan-gfw's run_type forward), until Shutdown or Close.
func (c *Client) ServeForward(ln net.Listener, target trojan.Addr) error {
	return c.acceptLoop(ln, func(app net.Conn) { c.handleFixed(app, target) })
}

// ServeNAT accepts connections that netfilter redirected to ln (nftables `redirect`) and sends each
// to its original destination through the server (trojan-gfw's run_type nat). Linux only: elsewhere
// every connection is refused with an error saying so.
func (c *Client) ServeNAT(ln net.Listener) error {
	if !inbound.NATSupported {
		_ = ln.Close()
		_, err := inbound.OriginalDst(nil)
		return err
	}
	return c.acceptLoop(ln, c.handleNAT)
}

// handleFixed tunnels app to a destination known before it speaks (forward mode).
func (c *Client) handleFixed(app net.Conn, dest trojan.Addr) {
	defer c.untrack(app)
	defer app.Close()
	start := time.Now()
	log := c.log.With("from", app.RemoteAddr().String(), "dest", dest.String())
	_ = app.SetDeadline(start.Add(c.opts.InboundTimeout))
	_ = c.tunnel(app, bufio.NewReaderSize(app, 512), dest, nil, nil, start, log)
}

func (c *Client) handleNAT(app net.Conn) {
	tc, ok := app.(*net.TCPConn)
	if !ok {
		c.failed.Add(1)
		c.untrack(app)
		_ = app.Close()
		return
	}
	orig, err := inbound.OriginalDst(tc)
	local, _ := netip.ParseAddrPort(app.LocalAddr().String())
	if err == nil && netip.AddrPortFrom(local.Addr().Unmap(), local.Port()) == orig {
		err = errors.New("connection was not redirected (it was addressed to the nat port itself)")
	}
	if err != nil {
		c.failed.Add(1)
		c.log.Debug("nat: no original destination", "from", app.RemoteAddr().String(), "err", err)
		c.untrack(app)
		_ = app.Close()
		return
	}
	c.handleFixed(app, trojan.AddrFromAddrPort(orig))
}

// ServeUDPForward reads datagrams on pc and forwards them to target through the server, one Trojan
// connection per source address, replying from pc (trojan-gfw's forward mode for UDP). It returns
// nil after Shutdown or Close.
func (c *Client) ServeUDPForward(pc *net.UDPConn, target trojan.Addr) error {
	if !c.udp.addConn(pc) {
		_ = pc.Close()
		return nil
	}
	defer c.udp.removeConn(pc)
	defer pc.Close()
	sessions := newPeerSessions()
	defer sessions.closeAll()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("forward udp read on %s: %w", pc.LocalAddr(), err)
		}
		peer := from
		c.sendFromPeer(sessions, peer, target, buf[:n], func() peerHooks {
			return peerHooks{
				deliver: func(_ trojan.Addr, payload []byte) error {
					_, err := pc.WriteToUDPAddrPort(payload, peer)
					return err
				},
				log: c.log.With("from", peer.String(), "dest", target.String(), "inbound", "forward-udp"),
			}
		})
	}
}
