// Package tfo dials and listens with TCP Fast Open and reads, from the kernel, whether it worked for
// each connection.
//
// The client side sets TCP_FASTOPEN_CONNECT: with a cookie cached for the server, connect() returns at
// once, sends nothing, and the SYN leaves with the first write, carrying it. Connection errors
// (refused, unreachable) then surface on the first read, not in the dial, so the caller's first
// exchange (the TLS handshake) must have a deadline: it is the real connect timeout. The server side
// sets TCP_FASTOPEN (the queue of pending TFO children) on a listener with MPTCP off.
//
// Where TFO cannot work (the namespace's net.ipv4.tcp_fastopen lacks the bit, the kernel refuses the
// option, or the OS is not Linux) dialing and listening work without it and one warning says what to
// change. Outcome reports per connection what the kernel saw (DESIGN.md 3.2).
package tfo

import (
	"fmt"
	"net"
	"syscall"
)

// Largest TLS ClientHello (the whole first write) that fits in a SYN at MTU 1500: MSS − 40 bytes of
// TCP options (DESIGN.md 3.4).
const (
	MaxSYNDataIPv4 = 1420
	MaxSYNDataIPv6 = 1400
)

// MaxSYNData returns the SYN payload limit for a connection to addr (host:port or bare IP): the IPv6
// limit for IPv6 addresses and for names (the stricter of the two, since a name may resolve to
// either), the IPv4 limit for IPv4 addresses.
func MaxSYNData(addr string) int {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
		return MaxSYNDataIPv4
	}
	return MaxSYNDataIPv6
}

// Outcome is what the kernel reports about TFO on one connection.
type Outcome uint8

// Outcomes. The zero value is NotAttempted.
const (
	// NotAttempted: the connection did not try TFO (switched off for this leg), or, on a server's
	// accepted connection, the SYN carried no data the server accepted (a server cannot tell a client
	// that did not try from one whose data it refused).
	NotAttempted Outcome = iota
	// Accepted: the SYN carried data and the peer acknowledged it; a round trip was saved.
	Accepted
	// CookieRequested: the client had no cookie for the server yet, so its SYN asked for one and
	// carried no data. Normal for the first connection to a server; permanent when the server's
	// kernel does not do TFO (no cookie ever comes back).
	CookieRequested
	// DataNotAccepted: the SYN carried data but the server acknowledged only the SYN (stale cookie,
	// server TFO switched off, TFO queue full, or a key the server does not know); the data was
	// sent again after the handshake.
	DataNotAccepted
	// SYNDataDropped: the SYN with data got no answer and the retransmitted SYN carried none: a
	// middlebox drops SYNs with data. Costs about one second per connection.
	SYNDataDropped
	// Unsupported: TFO cannot work here (OS, kernel, or the namespace's net.ipv4.tcp_fastopen).
	Unsupported
)

var outcomeNames = [...]string{
	NotAttempted:    "not_attempted",
	Accepted:        "accepted",
	CookieRequested: "cookie_requested",
	DataNotAccepted: "data_not_accepted",
	SYNDataDropped:  "syn_data_dropped",
	Unsupported:     "unsupported",
}

// Outcomes lists every outcome, in order (for metrics that pre-create their series).
func Outcomes() []Outcome {
	return []Outcome{NotAttempted, Accepted, CookieRequested, DataNotAccepted, SYNDataDropped, Unsupported}
}

// String is the outcome's name in logs and metric labels: "accepted", "cookie_requested",
// "data_not_accepted", "syn_data_dropped", "not_attempted" or "unsupported".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Meaning explains the outcome in a sentence, for people.
func (o Outcome) Meaning() string {
	switch o {
	case NotAttempted:
		return "no data rode in the SYN (TFO not tried on this leg)"
	case Accepted:
		return "the data rode in the SYN and was accepted: one round trip saved"
	case CookieRequested:
		return "no cookie yet: the SYN asked the server for one"
	case DataNotAccepted:
		return "the SYN carried data but the server did not accept it"
	case SYNDataDropped:
		return "the SYN with data was dropped on the path; the retry went without data"
	case Unsupported:
		return "TFO is not available on this system"
	}
	return o.String()
}

// Sysctl is a value of net.ipv4.tcp_fastopen (DESIGN.md 3.7).
type Sysctl int

// Bits of net.ipv4.tcp_fastopen.
const (
	SysctlClient             Sysctl = 0x1   // clients may send data in the SYN
	SysctlServer             Sysctl = 0x2   // listeners with TCP_FASTOPEN accept data in the SYN
	SysctlClientNoCookie     Sysctl = 0x4   // clients send data without a cookie
	SysctlServerNoCookie     Sysctl = 0x200 // servers accept data without a cookie
	SysctlServerAllListeners Sysctl = 0x400 // every listener accepts TFO, without TCP_FASTOPEN
)

// Client reports whether the client bit is set.
func (s Sysctl) Client() bool { return s&SysctlClient != 0 }

// Server reports whether the server bit is set.
func (s Sysctl) Server() bool { return s&SysctlServer != 0 }

// Fix is the command that enables both client and server TFO, keeping the other bits.
func (s Sysctl) Fix() string {
	return fmt.Sprintf("sysctl -w net.ipv4.tcp_fastopen=%d", s|SysctlClient|SysctlServer)
}

// SysctlKey is the name of the setting.
const SysctlKey = "net.ipv4.tcp_fastopen"

// syscallConn finds the socket under c, unwrapping TLS and other wrappers that expose the connection
// below them with NetConn().
func syscallConn(c net.Conn) (syscall.RawConn, bool) {
	for range 8 {
		switch v := c.(type) {
		case syscall.Conn:
			rc, err := v.SyscallConn()
			return rc, err == nil
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil, false
		}
	}
	return nil, false
}
