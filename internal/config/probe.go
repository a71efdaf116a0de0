package config

import (
	"net"
	"strconv"
)

// DefaultMaxConnsPerIP bounds the connections one client address holds at once (server): a quarter
// of the default max_conns, so that one address cannot take them all, while a household or office
// behind one NAT address (every app connection is a server connection) stays far below it.
const DefaultMaxConnsPerIP = 1024

// probe checks the keys that shape what probers and floods get: tls_site and max_conns_per_ip.
func (v *validator) probe(e *Ext) {
	if a := e.TLSSite; a != "" {
		host, port, err := net.SplitHostPort(a)
		if p, perr := strconv.Atoi(port); err != nil || perr != nil || host == "" || p <= 0 || p > 65535 {
			v.add("$.fastrojan.tls_site", "must be host:port of an HTTPS server such as \"127.0.0.1:8443\" (empty: built-in answers), got %q", a)
		}
	}
	if e.MaxConnsPerIP < 0 {
		v.add("$.fastrojan.max_conns_per_ip", "must not be negative, got %d (0 means the default, %d)", e.MaxConnsPerIP, DefaultMaxConnsPerIP)
	}
}
