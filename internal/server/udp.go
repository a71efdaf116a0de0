package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastrojan/fastrojan/internal/relay"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// DefaultUDPTimeout ends a UDP association with no datagram either way for this long (trojan-gfw's
// udp_timeout default).
const DefaultUDPTimeout = 60 * time.Second

// Outcome of a UDP association, as logged.
const outUDPAssociate = "udp_associate"

// udpReadBuf is what the server reads a target's datagram into: larger than any UDP payload, so a
// datagram too large to frame is seen whole and dropped rather than cut short.
const udpReadBuf = 64 << 10

// dnsCacheTTL is how long a domain resolved for a UDP association is reused. Short: the association
// may outlive a DNS change, and the cache only saves a lookup per datagram to the same name.
const dnsCacheTTL = 30 * time.Second

// maxDNSCache bounds the names remembered per association.
const maxDNSCache = 256

// udpStats are the server-wide UDP counters, reported in Stats.
type udpStats struct {
	associations, active    atomic.Int64
	datagramsUp, bytesUp    atomic.Int64 // client → targets
	datagramsDown, bytesDn  atomic.Int64 // targets → client
	dropped                 atomic.Int64 // oversized, unresolvable or unsendable datagrams
	badFrames               atomic.Int64 // associations ended by a malformed frame
	resolveErr, resolveHits atomic.Int64
}

// udpAssociate relays an authenticated UDP ASSOCIATE: every frame the client sends goes to its own
// destination out of one UDP socket; every datagram that comes back to that socket goes to the client
// as a frame naming its source. first holds the bytes that followed the header (trojan-gfw puts the
// first frame there); rb, which holds them, is released once they are copied. The association ends
// when the client closes, sends a malformed frame, or no datagram moves either way for UDPTimeout.
func (s *Server) udpAssociate(client net.Conn, first []byte, rb *requestBuf, l *connLog) {
	pending := append([]byte(nil), first...)
	rb.release()
	l.outcome = outUDPAssociate

	// One socket for all targets of the association: dual-stack where the host has IPv6.
	pc, err := net.ListenUDP("udp", nil)
	if err != nil {
		l.err = fmt.Errorf("udp socket: %w", err)
		return
	}
	defer pc.Close()
	s.udp.associations.Add(1)
	s.udp.active.Add(1)
	defer s.udp.active.Add(-1)

	a := &udpAssoc{
		s:       s,
		client:  client,
		pc:      pc,
		send:    pc.WriteToUDPAddrPort,
		timeout: s.opts.UDPTimeout,
		dns:     map[string]dnsEntry{},
		acctUp:  l.sess.Up(),   // the user's accounting (nil when not counted): payload bytes,
		acctDn:  l.sess.Down(), // as trojan-gfw counts UDP
	}
	_ = client.SetReadDeadline(time.Time{}) // from now on only the idle timer and downstream set it
	// The idle timer closes both ends, which ends both loops.
	a.idle = relay.NewIdleTimer(a.timeout, a.onIdle)
	a.idle.Start()
	defer a.idle.Stop()

	var wg sync.WaitGroup
	wg.Add(1)
	var downErr error
	go func() {
		defer wg.Done()
		downErr = a.downstream()
		// The target side failed or the association ended: stop the upstream read too.
		_ = client.SetReadDeadline(time.Unix(1, 0))
	}()
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(pending), client), 16<<10)
	upErr := a.upstream(r)
	_ = pc.Close() // ends downstream
	wg.Wait()

	l.up, l.down = a.bytesUp.Load(), a.bytesDown.Load()
	switch {
	case a.timedOut.Load():
		l.reason = "udp timeout"
	case upErr != nil && !errors.Is(upErr, io.EOF) && !isClosedOrTimeout(upErr):
		l.err = upErr
	case downErr != nil && !isClosedOrTimeout(downErr):
		l.err = downErr
	}
}

// udpAssoc is one UDP association on the server.
type udpAssoc struct {
	s       *Server
	client  net.Conn
	pc      *net.UDPConn
	send    func([]byte, netip.AddrPort) (int, error) // pc's, except in the fuzz test
	timeout time.Duration
	idle    *relay.IdleTimer // touched by every datagram either way; nil in the fuzz test

	acctUp, acctDn     *atomic.Int64 // the user's byte counts; nil when not counted
	timedOut           atomic.Bool
	bytesUp, bytesDown atomic.Int64

	dns map[string]dnsEntry // only the upstream loop uses it
}

type dnsEntry struct {
	ip      netip.Addr
	expires time.Time
}

// onIdle ends the association once nothing moved for the timeout.
func (a *udpAssoc) onIdle() {
	a.timedOut.Store(true)
	_ = a.client.SetReadDeadline(time.Unix(1, 0))
	_ = a.pc.Close()
}

// upstream reads frames from the client and sends each payload to its destination. It returns on the
// first malformed frame (the stream is out of step after it), or when the client ends.
func (a *udpAssoc) upstream(r *bufio.Reader) error {
	buf := make([]byte, trojan.MaxUDPPayload+trojan.MaxUDPHeaderLen)
	for {
		dst, payload, err := trojan.ReadUDPFrame(r, buf)
		if err != nil {
			if errors.Is(err, trojan.ErrInvalid) {
				a.s.udp.badFrames.Add(1)
				return fmt.Errorf("udp frame from client: %w", err)
			}
			return err
		}
		if a.timedOut.Load() {
			return nil
		}
		a.idle.Touch()
		to, err := a.resolve(dst)
		if err != nil {
			a.s.udp.dropped.Add(1)
			a.s.log.Debug("udp datagram dropped", "dest", dst.String(), "err", err)
			continue
		}
		a.bytesUp.Add(int64(len(payload)))
		addCount(a.acctUp, len(payload))
		a.s.udp.datagramsUp.Add(1)
		a.s.udp.bytesUp.Add(int64(len(payload)))
		if _, err := a.send(payload, to); err != nil {
			if isClosedOrTimeout(err) {
				return err
			}
			a.s.udp.dropped.Add(1)
			a.s.log.Debug("udp send failed", "dest", dst.String(), "err", err)
		}
	}
}

// downstream reads datagrams from the targets and sends each to the client as a frame. Datagrams too
// large for a frame are dropped.
func (a *udpAssoc) downstream() error {
	buf := make([]byte, udpReadBuf)
	frame := make([]byte, 0, trojan.MaxUDPHeaderLen+trojan.MaxUDPPayload)
	for {
		n, from, err := a.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		if n > trojan.MaxUDPPayload {
			a.s.udp.dropped.Add(1)
			continue
		}
		a.idle.Touch()
		frame, err = trojan.AppendUDPFrame(frame[:0], trojan.AddrFromAddrPort(from), buf[:n])
		if err != nil {
			a.s.udp.dropped.Add(1)
			continue
		}
		a.bytesDown.Add(int64(n))
		addCount(a.acctDn, n)
		a.s.udp.datagramsDown.Add(1)
		a.s.udp.bytesDn.Add(int64(n))
		_ = a.client.SetWriteDeadline(time.Now().Add(a.timeout))
		if _, err := a.client.Write(frame); err != nil {
			_ = a.client.SetReadDeadline(time.Unix(1, 0))
			return fmt.Errorf("udp frame to client: %w", err)
		}
	}
}

// resolve turns a frame's destination into an address to send to. IP literals sent as domains (as
// trojan-gfw clients do) need no lookup; names are looked up and cached briefly.
func (a *udpAssoc) resolve(dst trojan.Addr) (netip.AddrPort, error) {
	dst = dst.Canonical()
	if dst.Port == 0 {
		return netip.AddrPort{}, errors.New("port 0")
	}
	if dst.IP.IsValid() {
		return netip.AddrPortFrom(dst.IP, dst.Port), nil
	}
	if ip, err := netip.ParseAddr(dst.Domain); err == nil && ip.Zone() != "" {
		// "fe80::1%eth0" sent as a domain: the resolver would drop the zone and answer with some
		// other address; an interface of this server is no client's business anyway.
		a.s.udp.resolveErr.Add(1)
		return netip.AddrPort{}, fmt.Errorf("resolve %s: scoped IPv6 address refused", dst.Domain)
	}
	now := time.Now()
	if e, ok := a.dns[dst.Domain]; ok && now.Before(e.expires) {
		a.s.udp.resolveHits.Add(1)
		return netip.AddrPortFrom(e.ip, dst.Port), nil
	}
	ctx, cancel := context.WithTimeout(a.s.ctx, a.s.opts.DialTimeout)
	ips, err := a.s.opts.Resolver.LookupNetIP(ctx, "ip", dst.Domain)
	cancel()
	if err == nil && len(ips) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		a.s.udp.resolveErr.Add(1)
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", dst.Domain, err)
	}
	ip := ips[0].Unmap()
	if len(a.dns) >= maxDNSCache {
		clear(a.dns)
	}
	a.dns[dst.Domain] = dnsEntry{ip: ip, expires: now.Add(dnsCacheTTL)}
	return netip.AddrPortFrom(ip, dst.Port), nil
}

func isClosedOrTimeout(err error) bool {
	return errors.Is(err, net.ErrClosed) || isTimeout(err)
}
