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
	sessions := newPeerSessions()
	defer sessions.closeAll()
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
		peer := from
		c.sendFromPeer(sessions, peer, trojan.AddrFromAddrPort(orig), buf[:n], func() peerHooks {
			r := &tproxyReplier{app: peer, socks: map[netip.AddrPort]*net.UDPConn{}}
			return peerHooks{deliver: r.deliver, onClose: r.close, log: c.log.With("from", peer.String(), "inbound", "nat-udp")}
		})
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
