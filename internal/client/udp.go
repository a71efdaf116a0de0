package client

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastrojan/fastrojan/internal/inbound"
	"github.com/fastrojan/fastrojan/internal/relay"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// UDPStats count UDP traffic of every inbound (SOCKS5 UDP ASSOCIATE, forward, nat). Payload bytes.
type UDPStats struct {
	Sessions      int64 // Trojan UDP connections opened
	Active        int64 // Trojan UDP connections open now
	DatagramsUp   int64 // datagrams sent to the server
	BytesUp       int64
	DatagramsDown int64 // datagrams received from the server (a failed delivery also counts as Dropped)
	BytesDown     int64
	Dropped       int64 // datagrams dropped: wrong source, malformed, fragmented, too large, no tunnel
}

// udpState is the client's UDP bookkeeping: open sessions and packet listeners, so Close ends them.
type udpState struct {
	mu       sync.Mutex
	closed   bool
	sessions map[*udpSession]struct{}
	conns    map[net.PacketConn]struct{}
	wg       sync.WaitGroup // session reader goroutines

	sessionsTotal, active, datagramsUp, bytesUp, datagramsDown, bytesDown, dropped atomic.Int64
}

func (u *udpState) init() {
	u.sessions = map[*udpSession]struct{}{}
	u.conns = map[net.PacketConn]struct{}{}
}

func (u *udpState) stats() UDPStats {
	return UDPStats{
		Sessions:      u.sessionsTotal.Load(),
		Active:        u.active.Load(),
		DatagramsUp:   u.datagramsUp.Load(),
		BytesUp:       u.bytesUp.Load(),
		DatagramsDown: u.datagramsDown.Load(),
		BytesDown:     u.bytesDown.Load(),
		Dropped:       u.dropped.Load(),
	}
}

// addConn registers a packet listener so closeAll closes it; false once closing.
func (u *udpState) addConn(pc net.PacketConn) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return false
	}
	u.conns[pc] = struct{}{}
	return true
}

func (u *udpState) removeConn(pc net.PacketConn) {
	u.mu.Lock()
	delete(u.conns, pc)
	u.mu.Unlock()
}

// closeAll closes every packet listener and session and waits for the session readers to return.
func (u *udpState) closeAll() {
	u.mu.Lock()
	u.closed = true
	conns := make([]net.PacketConn, 0, len(u.conns))
	for pc := range u.conns {
		conns = append(conns, pc)
	}
	sessions := make([]*udpSession, 0, len(u.sessions))
	for s := range u.sessions {
		sessions = append(sessions, s)
	}
	u.mu.Unlock()
	for _, pc := range conns {
		_ = pc.Close()
	}
	for _, s := range sessions {
		s.close()
	}
	u.wg.Wait()
}

// udpSession is one Trojan connection in UDP ASSOCIATE mode: datagrams of one local peer go up as
// frames, frames coming back are handed to deliver. It ends when the server closes, a frame is
// malformed, it is closed, or no datagram moves either way for UDPTimeout.
type udpSession struct {
	c       *Client
	conn    net.Conn
	deliver func(src trojan.Addr, payload []byte) error
	onClose func()
	log     *slog.Logger

	wmu  sync.Mutex
	wbuf []byte

	idle *relay.IdleTimer // touched by every datagram either way
	once sync.Once
	done chan struct{}
}

// openUDPSession dials the server and sends the UDP ASSOCIATE header with the first datagram's frame
// right after it, in one write, as trojan-gfw does. deliver runs on the session's reader goroutine;
// onClose, if set, runs once when the session ends.
func (c *Client) openUDPSession(dst trojan.Addr, payload []byte, deliver func(trojan.Addr, []byte) error, onClose func(), log *slog.Logger) (*udpSession, error) {
	frame, err := trojan.AppendUDPFrame(make([]byte, 0, trojan.UDPFrameLen(dst, len(payload))), dst, payload)
	if err != nil {
		return nil, err
	}
	conn, err := c.opts.Outbound.Handshake(c.ctx)
	if err != nil {
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(c.opts.UDPTimeout))
	if err := c.opts.Outbound.Request(conn, trojan.CmdUDPAssociate, dst, frame); err != nil {
		_ = conn.Close()
		return nil, err
	}
	s := &udpSession{c: c, conn: conn, deliver: deliver, onClose: onClose, log: log, done: make(chan struct{})}
	s.idle = relay.NewIdleTimer(c.opts.UDPTimeout, func() {
		s.log.Debug("udp session idle, closing", "after", c.opts.UDPTimeout)
		s.close()
	}) // armed below, once the session is registered
	u := &c.udp
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		s.idle.Stop()
		_ = conn.Close()
		return nil, net.ErrClosed
	}
	u.sessions[s] = struct{}{}
	u.wg.Add(1)
	u.sessionsTotal.Add(1)
	u.active.Add(1) // before anyone can close it
	u.mu.Unlock()
	u.datagramsUp.Add(1)
	u.bytesUp.Add(int64(len(payload)))
	s.idle.Start()
	go s.readLoop()
	return s, nil
}

// send frames one datagram to dst. A payload too large for a frame is dropped (nil error).
func (s *udpSession) send(dst trojan.Addr, payload []byte) error {
	u := &s.c.udp
	if len(payload) > trojan.MaxUDPPayload {
		u.dropped.Add(1)
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var err error
	s.wbuf, err = trojan.AppendUDPFrame(s.wbuf[:0], dst, payload)
	if err != nil {
		u.dropped.Add(1)
		return nil
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.c.opts.UDPTimeout))
	if _, err := s.conn.Write(s.wbuf); err != nil {
		s.close()
		return fmt.Errorf("udp frame to server: %w", err)
	}
	s.idle.Touch()
	u.datagramsUp.Add(1)
	u.bytesUp.Add(int64(len(payload)))
	return nil
}

// isDone reports whether the session has ended.
func (s *udpSession) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *udpSession) readLoop() {
	defer s.c.udp.wg.Done()
	defer s.close()
	r := bufio.NewReaderSize(s.conn, 16<<10)
	buf := make([]byte, trojan.MaxUDPHeaderLen+trojan.MaxUDPPayload)
	u := &s.c.udp
	for {
		src, payload, err := trojan.ReadUDPFrame(r, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !s.isDone() {
				s.log.Debug("udp session ended", "err", err)
			}
			return
		}
		s.idle.Touch()
		u.datagramsDown.Add(1)
		u.bytesDown.Add(int64(len(payload)))
		if err := s.deliver(src, payload); err != nil {
			u.dropped.Add(1)
			s.log.Debug("udp datagram not delivered", "src", src.String(), "err", err)
		}
	}
}

// close ends the session; safe to call more than once and from any goroutine.
func (s *udpSession) close() {
	s.once.Do(func() {
		s.idle.Stop()
		_ = s.conn.Close()
		u := &s.c.udp
		u.mu.Lock()
		delete(u.sessions, s)
		u.mu.Unlock()
		u.active.Add(-1)
		close(s.done)
		if s.onClose != nil {
			s.onClose()
		}
	})
}

// socksUDP serves a SOCKS5 UDP ASSOCIATE: it binds a UDP socket on the address the application
// reached us on, tells the application where it is, and relays datagrams from the application (and
// only from it: the control connection's IP, and the port it announced or first used) through one
// Trojan connection. The association ends when the control connection closes (RFC 1928).
func (c *Client) socksUDP(app net.Conn, br *bufio.Reader, req inbound.Socks5Request, log *slog.Logger) {
	local, _ := netip.ParseAddrPort(app.LocalAddr().String())
	peer, _ := netip.ParseAddrPort(app.RemoteAddr().String())
	peerIP := peer.Addr().Unmap()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		c.failed.Add(1)
		_ = inbound.WriteSocks5Reply(app, inbound.RepGeneralFailure, netip.AddrPort{})
		log.Warn("udp associate: bind failed", "err", err)
		return
	}
	defer pc.Close()
	if !c.udp.addConn(pc) {
		return
	}
	defer c.udp.removeConn(pc)
	bound := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := inbound.WriteSocks5Reply(app, inbound.RepSucceeded, bound); err != nil {
		c.failed.Add(1)
		return
	}
	_ = app.SetDeadline(time.Time{})
	log = log.With("udp", bound.String())
	log.Debug("udp association open")

	// The control connection carries nothing more; when it ends, so does the association.
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		_, _ = io.Copy(io.Discard, br)
		_ = pc.Close()
	}()
	defer func() { _ = app.Close(); <-ctlDone }()

	var appAddr netip.AddrPort // locked on the first accepted datagram
	wantPort := req.Dest.Port  // 0: any port of the control connection's IP
	var sess *udpSession
	defer func() {
		if sess != nil {
			sess.close()
		}
	}()
	deliver := func(src trojan.Addr, payload []byte) error {
		b, err := inbound.AppendSocks5UDP(make([]byte, 0, 3+src.EncodedLen()+len(payload)), src, payload)
		if err != nil {
			return err
		}
		_, err = pc.WriteToUDPAddrPort(b, appAddr)
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		switch {
		case from.Addr() != peerIP, wantPort != 0 && from.Port() != wantPort, appAddr.IsValid() && from != appAddr:
			c.udp.dropped.Add(1)
			log.Debug("udp datagram from a stranger dropped", "src", from.String())
			continue
		}
		dst, payload, err := inbound.ParseSocks5UDP(buf[:n])
		if err != nil {
			c.udp.dropped.Add(1)
			log.Debug("udp datagram dropped", "err", err)
			continue
		}
		if !appAddr.IsValid() {
			appAddr = from // before any session exists, so deliver never sees it change
		}
		if sess != nil && !sess.isDone() {
			_ = sess.send(dst, payload)
			continue
		}
		if len(payload) > trojan.MaxUDPPayload {
			c.udp.dropped.Add(1)
			continue
		}
		sess, err = c.openUDPSession(dst, payload, deliver, nil, log)
		if err != nil {
			c.udp.dropped.Add(1)
			log.Warn("udp via trojan server failed", "err", err)
		}
	}
}
