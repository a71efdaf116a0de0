package server

import (
	"net"
	"net/netip"
	"sync"
)

// DefaultMaxConnsPerIP is the default of Options.MaxConnsPerIP.
const DefaultMaxConnsPerIP = 1024

// ipLimiter counts the connections each client address holds. Addresses are compared as they come
// (an IPv6 client gets its own count per address, not per prefix).
type ipLimiter struct {
	max int
	mu  sync.Mutex
	n   map[netip.Addr]int
}

func newIPLimiter(max int) *ipLimiter { return &ipLimiter{max: max, n: map[netip.Addr]int{}} }

func remoteIP(c net.Conn) (netip.Addr, bool) {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// acquire takes a slot for c's address; false when that address already holds max connections.
// A connection without an IP address (a test's pipe) is not limited.
func (l *ipLimiter) acquire(c net.Conn) bool {
	ip, ok := remoteIP(c)
	if !ok {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip] >= l.max {
		return false
	}
	l.n[ip]++
	return true
}

// release gives back the slot acquire took for c.
func (l *ipLimiter) release(c net.Conn) {
	ip, ok := remoteIP(c)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip]--; l.n[ip] <= 0 {
		delete(l.n, ip)
	}
}

// addresses is how many client addresses hold connections now.
func (l *ipLimiter) addresses() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.n)
}
