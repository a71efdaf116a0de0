//go:build linux

package inbound

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and, at level SOL_IPV6,
// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h): both are 80.
const soOriginalDst = 80

// OriginalDst returns where a connection redirected by netfilter (nftables `redirect`, iptables
// REDIRECT or DNAT) was going before the redirect, from the conntrack entry (SO_ORIGINAL_DST). For a
// connection that was not redirected it returns the connection's own local address.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	v6 := local.Addr().Is6() && !local.Addr().Is4In6()
	var ap netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		var buf [unix.SizeofSockaddrInet6]byte
		l := uint32(len(buf))
		level := unix.SOL_IP
		if v6 {
			level = unix.SOL_IPV6
		}
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), soOriginalDst,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
		if e != 0 {
			serr = e
			return
		}
		ap, serr = parseSockaddr(buf[:l])
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination (SO_ORIGINAL_DST) of %s: %w", c.RemoteAddr(), err)
	}
	return ap, nil
}

// parseSockaddr decodes a raw sockaddr_in or sockaddr_in6 (family in host order, port big-endian).
func parseSockaddr(b []byte) (netip.AddrPort, error) {
	if len(b) < 2 {
		return netip.AddrPort{}, fmt.Errorf("sockaddr of %d bytes", len(b))
	}
	switch fam := *(*uint16)(unsafe.Pointer(&b[0])); fam {
	case unix.AF_INET:
		if len(b) < 8 {
			return netip.AddrPort{}, fmt.Errorf("sockaddr_in of %d bytes", len(b))
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4])), nil
	case unix.AF_INET6:
		if len(b) < 24 {
			return netip.AddrPort{}, fmt.Errorf("sockaddr_in6 of %d bytes", len(b))
		}
		ip := netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[2:4])), nil
	default:
		return netip.AddrPort{}, fmt.Errorf("sockaddr family %d", fam)
	}
}

// ListenTProxyUDP opens the UDP socket that nftables' `tproxy` sends datagrams to: IP_TRANSPARENT
// (so it receives datagrams addressed to any address) and IP_RECVORIGDSTADDR (so each datagram says
// where it was going), for IPv4 and, on a dual-stack socket, IPv6. Needs CAP_NET_ADMIN.
func ListenTProxyUDP(addr string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		return transparentControl(c, true)
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("tproxy udp listen %s: %w", addr, err)
	}
	return pc.(*net.UDPConn), nil
}

// transparentControl sets IP_TRANSPARENT (and IPV6_TRANSPARENT where the socket is IPv6), and with
// recvOrig asks for the original destination of each datagram.
func transparentControl(c syscall.RawConn, recvOrig bool) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		domain, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil {
			serr = fmt.Errorf("SO_DOMAIN: %w", err)
			return
		}
		if err := unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1); err != nil {
			serr = fmt.Errorf("IP_TRANSPARENT (needs CAP_NET_ADMIN): %w", err)
			return
		}
		if recvOrig {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1); err != nil {
				serr = fmt.Errorf("IP_RECVORIGDSTADDR: %w", err)
				return
			}
		}
		if domain != unix.AF_INET6 {
			return
		}
		if err := unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1); err != nil {
			serr = fmt.Errorf("IPV6_TRANSPARENT: %w", err)
			return
		}
		if recvOrig {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_RECVORIGDSTADDR, 1); err != nil {
				serr = fmt.Errorf("IPV6_RECVORIGDSTADDR: %w", err)
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// TProxyOOBSize is enough room for the control message ReadTProxyUDP needs.
const TProxyOOBSize = 128

// ReadTProxyUDP reads one datagram from a socket made by ListenTProxyUDP and returns its source and
// the destination it was sent to before nftables diverted it.
func ReadTProxyUDP(pc *net.UDPConn, buf, oob []byte) (n int, src, origDst netip.AddrPort, err error) {
	n, oobn, _, src, err := pc.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return 0, netip.AddrPort{}, netip.AddrPort{}, err
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	origDst, err = ParseOrigDstCmsg(oob[:oobn])
	return n, src, origDst, err
}

// ParseOrigDstCmsg finds IP_ORIGDSTADDR or IPV6_ORIGDSTADDR in control messages.
func ParseOrigDstCmsg(oob []byte) (netip.AddrPort, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("control messages: %w", err)
	}
	for _, m := range msgs {
		if (m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_ORIGDSTADDR) ||
			(m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_ORIGDSTADDR) {
			return parseSockaddr(m.Data)
		}
	}
	return netip.AddrPort{}, fmt.Errorf("no original destination in the control messages (is the socket behind an nftables tproxy rule?)")
}

// ListenTProxyReply opens a UDP socket bound to from, an address that is not this host's (the
// destination the application originally sent to), so replies reach the application from the address
// it expects. Needs CAP_NET_ADMIN.
func ListenTProxyReply(from netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		return transparentControl(c, false)
	}}
	network := "udp4"
	if from.Addr().Is6() {
		network = "udp6"
	}
	pc, err := lc.ListenPacket(context.Background(), network, from.String())
	if err != nil {
		return nil, fmt.Errorf("tproxy reply socket on %s: %w", from, err)
	}
	return pc.(*net.UDPConn), nil
}

// NATSupported reports whether nat mode (REDIRECT and TPROXY) works on this OS.
const NATSupported = true
