package trojan

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
)

// Address types (ATYP).
const (
	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// MaxDomainLen is the longest domain the one-byte length field can carry.
const MaxDomainLen = 255

// MaxAddrLen is the longest encoded address: ATYP, length byte, 255-byte domain, port.
const MaxAddrLen = 1 + 1 + MaxDomainLen + 2

// Addr is a destination: exactly one of IP (valid, no zone) or Domain (1..255 bytes) is set.
//
// Domain is kept byte for byte as received, so it may hold anything, including an IP literal in text:
// trojan-gfw's own client sends every destination as ATYP 0x03. Use Canonical to turn such a literal
// into an IP before matching it against address rules.
type Addr struct {
	IP     netip.Addr
	Domain string
	Port   uint16
}

// AddrFromAddrPort returns the Addr for ap, with an IPv4-mapped IPv6 address unmapped (what a
// dual-stack UDP socket reports for an IPv4 peer) and any zone dropped.
func AddrFromAddrPort(ap netip.AddrPort) Addr {
	return Addr{IP: ap.Addr().Unmap().WithZone(""), Port: ap.Port()}
}

// ParseAddrString parses "1.2.3.4:80", "[::1]:443" or "example.com:443". The port must be numeric.
// An IPv4-mapped IPv6 address is unmapped; an address with a zone is rejected (it cannot go on the wire).
func ParseAddrString(hostport string) (Addr, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return Addr{}, invalidf("address %q: %v", hostport, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return Addr{}, invalidf("address %q: port %q is not a number in 0..65535", hostport, port)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return Addr{}, invalidf("address %q: an address with a zone cannot be sent", hostport)
		}
		return Addr{IP: ip.Unmap(), Port: uint16(p)}, nil
	}
	if len(host) == 0 || len(host) > MaxDomainLen {
		return Addr{}, invalidf("address %q: host must have 1..%d bytes, has %d", hostport, MaxDomainLen, len(host))
	}
	return Addr{Domain: host, Port: uint16(p)}, nil
}

// IsValid reports whether a can be encoded.
func (a Addr) IsValid() bool { return a.check() == nil }

func (a Addr) check() error {
	switch {
	case a.IP.IsValid() && a.Domain != "":
		return invalidf("address has both an IP and a domain")
	case a.IP.IsValid():
		if a.IP.Zone() != "" {
			return invalidf("address %s has a zone", a.IP)
		}
		return nil
	case a.Domain == "":
		return invalidf("address has neither an IP nor a domain")
	case len(a.Domain) > MaxDomainLen:
		return invalidf("domain has %d bytes, at most %d fit", len(a.Domain), MaxDomainLen)
	}
	return nil
}

// Canonical returns a with a Domain that is an IP literal turned into IP (unmapped); otherwise a.
func (a Addr) Canonical() Addr {
	if a.Domain == "" {
		return a
	}
	ip, err := netip.ParseAddr(a.Domain)
	if err != nil || ip.Zone() != "" {
		return a
	}
	return Addr{IP: ip.Unmap(), Port: a.Port}
}

// String returns the net.JoinHostPort form, suitable for net.Dial.
func (a Addr) String() string {
	host := a.Domain
	if a.IP.IsValid() {
		host = a.IP.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(a.Port)))
}

// EncodedLen is the number of bytes AppendTo writes for a valid a.
func (a Addr) EncodedLen() int {
	switch {
	case a.IP.Is4():
		return 1 + 4 + 2
	case a.IP.IsValid():
		return 1 + 16 + 2
	}
	return 1 + 1 + len(a.Domain) + 2
}

// AppendTo appends ATYP ADDR PORT. An IPv4 address (Is4) is written as ATYP 0x01, any other IP
// (IPv4-mapped IPv6 included, so that parsing and encoding are exact inverses) as ATYP 0x04. On error b
// is returned unchanged.
func (a Addr) AppendTo(b []byte) ([]byte, error) {
	if err := a.check(); err != nil {
		return b, err
	}
	switch {
	case a.IP.Is4():
		ip := a.IP.As4()
		b = append(b, atypIPv4)
		b = append(b, ip[:]...)
	case a.IP.IsValid():
		ip := a.IP.As16()
		b = append(b, atypIPv6)
		b = append(b, ip[:]...)
	default:
		b = append(b, atypDomain, byte(len(a.Domain)))
		b = append(b, a.Domain...)
	}
	return binary.BigEndian.AppendUint16(b, a.Port), nil
}

// ParseAddr parses ATYP ADDR PORT from the start of b and returns the number of bytes it used. It
// returns ErrShort if b is a proper prefix of a valid address, and an error wrapping ErrInvalid for an
// unknown ATYP or a zero-length domain. A domain is the only case that allocates.
func ParseAddr(b []byte) (a Addr, n int, err error) {
	if len(b) == 0 {
		return Addr{}, 0, ErrShort
	}
	switch b[0] {
	case atypIPv4:
		n = 1 + 4 + 2
		if len(b) < n {
			return Addr{}, 0, ErrShort
		}
		a.IP = netip.AddrFrom4([4]byte(b[1:5]))
	case atypIPv6:
		n = 1 + 16 + 2
		if len(b) < n {
			return Addr{}, 0, ErrShort
		}
		a.IP = netip.AddrFrom16([16]byte(b[1:17]))
	case atypDomain:
		if len(b) < 2 {
			return Addr{}, 0, ErrShort
		}
		l := int(b[1])
		if l == 0 {
			return Addr{}, 0, invalidf("zero-length domain")
		}
		n = 1 + 1 + l + 2
		if len(b) < n {
			return Addr{}, 0, ErrShort
		}
		a.Domain = string(b[2 : 2+l])
	default:
		return Addr{}, 0, invalidf("unknown address type 0x%02x", b[0])
	}
	a.Port = binary.BigEndian.Uint16(b[n-2 : n])
	return a, n, nil
}
