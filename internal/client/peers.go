package client

import (
	"log/slog"
	"net/netip"
	"sync"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// peerSessions holds one UDP session per application source address, for the inbounds that serve
// many applications on one socket (UDP forward, nat's TPROXY).
type peerSessions struct {
	mu sync.Mutex
	m  map[netip.AddrPort]*udpSession
}

func newPeerSessions() *peerSessions {
	return &peerSessions{m: map[netip.AddrPort]*udpSession{}}
}

// peerHooks are what a new session for one peer needs: where replies go, what to undo when the
// session ends (may be nil), and its logger.
type peerHooks struct {
	deliver func(trojan.Addr, []byte) error
	onClose func()
	log     *slog.Logger
}

// sendFromPeer relays one datagram from peer to dst: on peer's live session, or on a new one set up
// with the hooks newHooks returns (called only then, so the per-datagram path allocates nothing).
// Datagrams that cannot be sent are counted as dropped.
func (c *Client) sendFromPeer(t *peerSessions, peer netip.AddrPort, dst trojan.Addr, payload []byte, newHooks func() peerHooks) {
	t.mu.Lock()
	s := t.m[peer]
	t.mu.Unlock()
	if s != nil && !s.isDone() {
		_ = s.send(dst, payload)
		return
	}
	if len(payload) > trojan.MaxUDPPayload {
		c.udp.dropped.Add(1)
		return
	}
	h := newHooks()
	var self *udpSession
	s, err := c.openUDPSession(dst, payload, h.deliver, func() {
		if h.onClose != nil {
			h.onClose()
		}
		t.mu.Lock()
		if t.m[peer] == self {
			delete(t.m, peer)
		}
		t.mu.Unlock()
	}, h.log)
	if err != nil {
		c.udp.dropped.Add(1)
		h.log.Warn("udp via trojan server failed", "dest", dst.String(), "err", err)
		return
	}
	t.mu.Lock()
	self = s
	t.m[peer] = s
	t.mu.Unlock()
}

// closeAll ends every session.
func (t *peerSessions) closeAll() {
	t.mu.Lock()
	all := make([]*udpSession, 0, len(t.m))
	for _, s := range t.m {
		all = append(all, s)
	}
	t.mu.Unlock()
	for _, s := range all {
		s.close()
	}
}
