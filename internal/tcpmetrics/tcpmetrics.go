// Package tcpmetrics reads the kernel's TCP metrics cache, where Linux keeps the TCP Fast Open
// cookie it learned for each destination, over the generic netlink family "tcp_metrics" (what
// `ip tcp_metrics show` prints). No Go library decodes this family; the transport is
// github.com/mdlayher/genetlink and only the attribute decoding is ours.
package tcpmetrics

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Entry is one destination in the cache. The zero Src means the kernel keyed the entry by
// destination only.
type Entry struct {
	Dst, Src netip.Addr
	// Age is how long ago the entry was last updated.
	Age time.Duration
	// Cookie is the TFO cookie learned from Dst, empty if none.
	Cookie []byte
	// FastOpenMSS is the MSS the server announced along with the cookie.
	FastOpenMSS uint16
	// SYNDrops counts SYNs with data to Dst that went unanswered (the kernel's own blackhole
	// evidence), and SYNDropAge is how long ago the last one was.
	SYNDrops   uint16
	SYNDropAge time.Duration
}

// HasCookie reports whether a TFO cookie is cached for the entry.
func (e Entry) HasCookie() bool { return len(e.Cookie) > 0 }

// Attribute numbers of the tcp_metrics family (include/uapi/linux/tcp_metrics.h).
const (
	attrAddrIPv4     = 1
	attrAddrIPv6     = 2
	attrAge          = 3
	attrFopenMSS     = 7
	attrFopenDrops   = 8
	attrFopenDropTS  = 9
	attrFopenCookie  = 10
	attrSaddrIPv4    = 11
	attrSaddrIPv6    = 12
	maxCookieLen     = 16 // TCP_FASTOPEN_COOKIE_MAX
	familyName       = "tcp_metrics"
	cmdGet           = 1
	familyMinVersion = 1
)

// ErrInvalid is wrapped by errors for attributes the kernel would never send.
var ErrInvalid = errors.New("tcpmetrics: invalid attribute")

// attr is one netlink attribute, already split.
type attr struct {
	typ  uint16
	data []byte
}

// decodeEntry builds an Entry from the attributes of one message.
func decodeEntry(attrs []attr) (Entry, error) {
	var e Entry
	for _, a := range attrs {
		switch a.typ {
		case attrAddrIPv4, attrSaddrIPv4:
			if len(a.data) != 4 {
				return e, fmt.Errorf("%w: IPv4 address of %d bytes", ErrInvalid, len(a.data))
			}
			ip := netip.AddrFrom4([4]byte(a.data))
			if a.typ == attrAddrIPv4 {
				e.Dst = ip
			} else {
				e.Src = ip
			}
		case attrAddrIPv6, attrSaddrIPv6:
			if len(a.data) != 16 {
				return e, fmt.Errorf("%w: IPv6 address of %d bytes", ErrInvalid, len(a.data))
			}
			ip := netip.AddrFrom16([16]byte(a.data))
			if a.typ == attrAddrIPv6 {
				e.Dst = ip
			} else {
				e.Src = ip
			}
		case attrAge:
			v, err := uintN(a.data, 8)
			if err != nil {
				return e, fmt.Errorf("age: %w", err)
			}
			e.Age = time.Duration(v) * time.Millisecond
		case attrFopenMSS:
			v, err := uintN(a.data, 2)
			if err != nil {
				return e, fmt.Errorf("fastopen mss: %w", err)
			}
			e.FastOpenMSS = uint16(v)
		case attrFopenDrops:
			v, err := uintN(a.data, 2)
			if err != nil {
				return e, fmt.Errorf("fastopen syn drops: %w", err)
			}
			e.SYNDrops = uint16(v)
		case attrFopenDropTS:
			v, err := uintN(a.data, 8)
			if err != nil {
				return e, fmt.Errorf("fastopen syn drop age: %w", err)
			}
			e.SYNDropAge = time.Duration(v) * time.Millisecond
		case attrFopenCookie:
			if len(a.data) > maxCookieLen {
				return e, fmt.Errorf("%w: cookie of %d bytes", ErrInvalid, len(a.data))
			}
			e.Cookie = append([]byte(nil), a.data...)
		}
	}
	if !e.Dst.IsValid() {
		return e, fmt.Errorf("%w: entry without destination", ErrInvalid)
	}
	return e, nil
}

// uintN reads a native-endian (little-endian on every platform Linux runs TFO on that we build
// for) unsigned integer of exactly size bytes.
func uintN(b []byte, size int) (uint64, error) {
	if len(b) != size {
		return 0, fmt.Errorf("%w: %d bytes, want %d", ErrInvalid, len(b), size)
	}
	var v uint64
	for i := size - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}
