// Package inbound accepts application connections on the client side and turns them into a
// destination plus the application's connection: SOCKS5 (CONNECT and UDP ASSOCIATE, with the UDP
// datagram header), HTTP proxy (CONNECT and absolute-URI requests), and on Linux the original
// destination of redirected TCP connections and TPROXY'd UDP datagrams (nat mode).
//
// The SOCKS5 server is written here rather than taken from a library: the libraries reachable from
// this project's module proxy are either unavailable or do not let the caller reply before dialing,
// wait for the first payload, or hand the UDP association to the caller, which the Trojan client needs.
// The address encoding is shared with the Trojan codec (SOCKS5 and Trojan use the same ATYP ADDR PORT).
package inbound

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// SOCKS5 constants (RFC 1928).
const (
	socksVersion       = 0x05
	methodNoAuth       = 0x00
	methodNoAcceptable = 0xff

	CmdConnect      = 0x01
	CmdBind         = 0x02
	CmdUDPAssociate = 0x03

	RepSucceeded           = 0x00
	RepGeneralFailure      = 0x01
	RepNetworkUnreachable  = 0x03
	RepHostUnreachable     = 0x04
	RepConnectionRefused   = 0x05
	RepCommandNotSupported = 0x07
	RepAddrNotSupported    = 0x08
)

// ErrNotSOCKS5 is returned when the first byte is not a SOCKS5 greeting.
var ErrNotSOCKS5 = errors.New("not a SOCKS5 greeting")

// Socks5Request is what the application asked for.
type Socks5Request struct {
	Cmd  byte
	Dest trojan.Addr
}

// maxSocksRequest bounds the request: VER CMD RSV ATYP + 1 + 255 + 2.
const maxSocksRequest = 4 + 1 + 255 + 2

// ReadSocks5 performs the method negotiation (no authentication) and reads the request.
// It replies itself only to what it must refuse (no acceptable method, bad command or address);
// a successful request is answered by the caller with WriteSocks5Reply, so it can answer before
// the upstream connection is ready.
func ReadSocks5(r *bufio.Reader, w io.Writer) (Socks5Request, error) {
	var req Socks5Request
	head := make([]byte, 2)
	if _, err := io.ReadFull(r, head); err != nil {
		return req, fmt.Errorf("socks5 greeting: %w", err)
	}
	if head[0] != socksVersion {
		return req, ErrNotSOCKS5
	}
	nmethods := int(head[1])
	methods := make([]byte, nmethods)
	if _, err := io.ReadFull(r, methods); err != nil {
		return req, fmt.Errorf("socks5 methods: %w", err)
	}
	if !containsByte(methods, methodNoAuth) {
		_, _ = w.Write([]byte{socksVersion, methodNoAcceptable})
		return req, fmt.Errorf("socks5: client offers no supported method (only no-auth is supported)")
	}
	if _, err := w.Write([]byte{socksVersion, methodNoAuth}); err != nil {
		return req, fmt.Errorf("socks5 method reply: %w", err)
	}

	// VER CMD RSV ATYP ...: peek enough to parse the address with the shared codec.
	hdr := make([]byte, 3)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return req, fmt.Errorf("socks5 request: %w", err)
	}
	if hdr[0] != socksVersion {
		return req, fmt.Errorf("socks5 request: version %#x", hdr[0])
	}
	req.Cmd = hdr[1]
	addr, err := readAddr(r)
	if err != nil {
		_ = WriteSocks5Reply(w, RepAddrNotSupported, netip.AddrPort{})
		return req, fmt.Errorf("socks5 request address: %w", err)
	}
	req.Dest = addr
	switch req.Cmd {
	case CmdConnect, CmdUDPAssociate:
		// UDP ASSOCIATE: Dest is where the application will send datagrams from (often 0.0.0.0:0).
	default:
		_ = WriteSocks5Reply(w, RepCommandNotSupported, netip.AddrPort{})
		return req, fmt.Errorf("socks5: command %#x not supported", req.Cmd)
	}
	return req, nil
}

// readAddr reads ATYP ADDR PORT, growing the peek until the codec can decide.
func readAddr(r *bufio.Reader) (trojan.Addr, error) {
	for need := 1; need <= maxSocksRequest; {
		b, err := r.Peek(need)
		if err != nil {
			return trojan.Addr{}, err
		}
		a, n, perr := trojan.ParseAddr(b)
		switch {
		case perr == nil:
			_, _ = r.Discard(n)
			return a, nil
		case errors.Is(perr, trojan.ErrShort):
			need++
		default:
			return trojan.Addr{}, perr
		}
	}
	return trojan.Addr{}, fmt.Errorf("address longer than %d bytes", maxSocksRequest)
}

// WriteSocks5Reply writes a reply with the given code and bound address (zero: 0.0.0.0:0).
func WriteSocks5Reply(w io.Writer, rep byte, bound netip.AddrPort) error {
	b := []byte{socksVersion, rep, 0x00}
	a := trojan.Addr{IP: netip.IPv4Unspecified()}
	if bound.IsValid() {
		a = trojan.Addr{IP: bound.Addr().Unmap(), Port: bound.Port()}
	}
	b, err := a.AppendTo(b)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}
