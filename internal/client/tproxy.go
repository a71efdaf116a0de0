package client

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/fastrojan/fastrojan/internal/inbound"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// ServeTProxyUDP relays datagrams that nftables' `tproxy` diverted to pc (made by
// inbound.ListenTProxyUDP) to their original destinations through the server: one Trojan connection
// per application source address. Replies leave from the address the application sent to, through
// a transparent socket bound to it, so the application sees the answer it expects. Linux only.
func (c *Client) ServeTProxyUDP(pc *net.UDPConn) error {
	if !c.udp.addConn(pc) {
		_ = pc.Close()
		return nil
	}
	defer c.udp.removeConn(pc)
	defer pc.Close()
	var mu sync.Mutex
	sessions := map[netip.AddrPort]*udpSession{}
	defer func() {
		mu.Lock()
		all := make([]*udpSession, 0, len(sessions))
		for _, s := range sessions {
			all = append(all, s)
		}
		mu.Unlock()
		for _, s := range all {
			s.close()
		}
	}()
	buf := make([]byte, 64<<10)
	oob := make([]byte, inbound.TProxyOOBSize)
	for {
		n, from, orig, err := inbound.ReadTProxyUDP(pc, buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if n == 0 && from.IsValid() {
				c.udp.dropped.Add(1) // a datagram without its original destination
				continue
			}
			return fmt.Errorf("nat udp read on %s: %w", pc.LocalAddr(), err)
		}
		dst := trojan.AddrFromAddrPort(orig)
		mu.Lock()
		s := sessions[from]
		mu.Unlock()
		if s != nil && !s.isDone() {
			_ = s.send(dst, buf[:n])
			continue
		}
		if n > trojan.MaxUDPPayload {
			c.udp.dropped.Add(1)
			continue
		}
		r := &tproxyReplier{app: from, socks: map[netip.AddrPort]*net.UDPConn{}}
		log := c.log.With("from", from.String(), "inbound", "nat-udp")
		var self *udpSession
		peer := from
		s, err = c.openUDPSession(dst, buf[:n], r.deliver, func() {
			r.close()
			mu.Lock()
			if sessions[peer] == self {
				delete(sessions, peer)
			}
			mu.Unlock()
		}, log)
		if err != nil {
			c.udp.dropped.Add(1)
			log.Warn("udp via trojan server failed", "dest", dst.String(), "err", err)
			continue
		}
		mu.Lock()
		self = s
		sessions[peer] = s
		mu.Unlock()
	}
}

// tproxyReplier sends replies to one application from the addresses it sent to.
type tproxyReplier struct {
	app    netip.AddrPort
	mu     sync.Mutex
	closed bool
	socks  map[netip.AddrPort]*net.UDPConn
}

// maxReplySockets bounds the transparent sockets one application's session keeps open.
const maxReplySockets = 64

func (r *tproxyReplier) deliver(src trojan.Addr, payload []byte) error {
	src = src.Canonical()
	if !src.IP.IsValid() {
		return fmt.Errorf("reply from a domain %q cannot be sent transparently", src.Domain)
	}
	from := netip.AddrPortFrom(src.IP, src.Port)
	if r.app.Addr().Is6() && from.Addr().Is4() {
		from = netip.AddrPortFrom(netip.AddrFrom16(from.Addr().As16()), from.Port())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return net.ErrClosed
	}
	sock := r.socks[from]
	if sock == nil {
		if len(r.socks) >= maxReplySockets {
			for k, s := range r.socks {
				_ = s.Close()
				delete(r.socks, k)
			}
		}
		var err error
		if sock, err = inbound.ListenTProxyReply(from); err != nil {
			return err
		}
		r.socks[from] = sock
	}
	_, err := sock.WriteToUDPAddrPort(payload, r.app)
	return err
}

func (r *tproxyReplier) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for k, s := range r.socks {
		_ = s.Close()
		delete(r.socks, k)
	}
}
