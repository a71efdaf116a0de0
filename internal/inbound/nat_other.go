//go:build !linux

package inbound

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// errNAT is what every nat function returns off Linux.
var errNAT = fmt.Errorf("nat mode (transparent proxy) needs Linux netfilter: %w", errors.ErrUnsupported)

// OriginalDst needs Linux's SO_ORIGINAL_DST; elsewhere it returns an error wrapping
// errors.ErrUnsupported.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) { return netip.AddrPort{}, errNAT }

// ListenTProxyUDP needs Linux's TPROXY; elsewhere it returns an error wrapping errors.ErrUnsupported.
func ListenTProxyUDP(addr string) (*net.UDPConn, error) { return nil, errNAT }

// TProxyOOBSize is enough room for the control message ReadTProxyUDP needs.
const TProxyOOBSize = 128

// ReadTProxyUDP needs Linux; elsewhere it returns an error wrapping errors.ErrUnsupported.
func ReadTProxyUDP(pc *net.UDPConn, buf, oob []byte) (n int, src, origDst netip.AddrPort, err error) {
	return 0, netip.AddrPort{}, netip.AddrPort{}, errNAT
}

// ParseOrigDstCmsg needs Linux; elsewhere it returns an error wrapping errors.ErrUnsupported.
func ParseOrigDstCmsg(oob []byte) (netip.AddrPort, error) { return netip.AddrPort{}, errNAT }

// ListenTProxyReply needs Linux; elsewhere it returns an error wrapping errors.ErrUnsupported.
func ListenTProxyReply(from netip.AddrPort) (*net.UDPConn, error) { return nil, errNAT }

// NATSupported reports whether nat mode (REDIRECT and TPROXY) works on this OS.
const NATSupported = false
