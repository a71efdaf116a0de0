package inbound

import (
	"errors"
	"fmt"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// ErrFragmented is returned for a SOCKS5 UDP datagram with a non-zero FRAG field: fragment reassembly
// is optional in RFC 1928 and, like most servers, this one drops such datagrams.
var ErrFragmented = errors.New("socks5 udp: fragmented datagram")

// ParseSocks5UDP parses a datagram an application sends to a SOCKS5 UDP relay:
// RSV(2) FRAG(1) ATYP DST.ADDR DST.PORT DATA. The payload aliases b.
func ParseSocks5UDP(b []byte) (dst trojan.Addr, payload []byte, err error) {
	if len(b) < 4 {
		return trojan.Addr{}, nil, fmt.Errorf("socks5 udp: datagram of %d bytes is shorter than a header", len(b))
	}
	if b[0] != 0 || b[1] != 0 {
		return trojan.Addr{}, nil, fmt.Errorf("socks5 udp: reserved bytes %#x %#x are not zero", b[0], b[1])
	}
	if b[2] != 0 {
		return trojan.Addr{}, nil, ErrFragmented
	}
	dst, n, err := trojan.ParseAddr(b[3:])
	if err != nil {
		return trojan.Addr{}, nil, fmt.Errorf("socks5 udp address: %w", err)
	}
	return dst, b[3+n:], nil
}

// AppendSocks5UDP appends the datagram a SOCKS5 UDP relay sends back to the application: the header
// naming src, where the payload came from, then the payload.
func AppendSocks5UDP(b []byte, src trojan.Addr, payload []byte) ([]byte, error) {
	b = append(b, 0, 0, 0)
	b, err := src.AppendTo(b)
	if err != nil {
		return b[:len(b)-3], fmt.Errorf("socks5 udp: %w", err)
	}
	return append(b, payload...), nil
}
