// Package tcpopt applies trojan-gfw's tcp.* switches (no_delay, keep_alive, reuse_port,
// prefer_ipv4) to the listeners and dials a config builds, for the server and the client alike.
package tcpopt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/fastrojan/fastrojan/internal/config"
)

// Go's own defaults match trojan-gfw's (TCP_NODELAY and keep-alive on), so only switching one off or
// asking for SO_REUSEPORT changes anything.

// Listen opens a plain TCP listener with t's options; MPTCP is off, as on the TFO listener.
func Listen(t config.TCP, addr string) (net.Listener, error) {
	lc := ListenConfig(t)
	// Go 1.24+ listens with MPTCP by default, which changes TFO behaviour (DESIGN.md 3.6).
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return WrapListener(t, ln), nil
}

// ListenConfig returns the listener settings for t: keep-alive off when tcp.keep_alive is false,
// SO_REUSEPORT (several processes on one port, as with trojan-gfw) when tcp.reuse_port is true.
func ListenConfig(t config.TCP) net.ListenConfig {
	var lc net.ListenConfig
	if !t.KeepAlive {
		lc.KeepAlive = -1
	}
	if t.ReusePort {
		lc.Control = setReusePort
	}
	return lc
}

// WrapListener wraps ln so accepted connections get TCP_NODELAY off when tcp.no_delay is false.
func WrapListener(t config.TCP, ln net.Listener) net.Listener {
	if t.NoDelay {
		return ln
	}
	return noDelayOffListener{ln}
}

type noDelayOffListener struct{ net.Listener }

// SyscallConn exposes the socket below, so farm keys can still be set on the listener.
func (l noDelayOffListener) SyscallConn() (syscall.RawConn, error) {
	sc, ok := l.Listener.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("listener %T: %w", l.Listener, errors.ErrUnsupported)
	}
	return sc.SyscallConn()
}

func (l noDelayOffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(false)
	}
	return c, err
}

// Dialer returns the dialer settings for t (keep-alive).
func Dialer(t config.TCP) net.Dialer {
	var d net.Dialer
	if !t.KeepAlive {
		d.KeepAlive = -1
	}
	return d
}

// DialFunc opens a connection.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// PlainDial is the dial used where TCP Fast Open is off; nil when t changes nothing, so callers keep
// their defaults.
func PlainDial(t config.TCP) DialFunc {
	if t.KeepAlive && t.NoDelay && !t.PreferIPv4 {
		return nil
	}
	d := Dialer(t)
	return WithDialOptions(t, d.DialContext)
}

// WithDialOptions applies tcp.no_delay and tcp.prefer_ipv4 to what dial makes.
func WithDialOptions(t config.TCP, dial DialFunc) DialFunc {
	return PreferIPv4(t, withNoDelay(t, dial))
}

// PreferIPv4 dials a name over IPv4 first when tcp.prefer_ipv4 is set (as trojan-gfw orders the
// resolver's answers), then over IPv6 if that fails; addresses and other networks pass through.
func PreferIPv4(t config.TCP, dial DialFunc) DialFunc {
	if !t.PreferIPv4 || dial == nil {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if network != "tcp" || err != nil || net.ParseIP(host) != nil {
			return dial(ctx, network, addr)
		}
		c, err4 := dial(ctx, "tcp4", addr)
		if err4 == nil {
			return c, nil
		}
		c, err6 := dial(ctx, "tcp6", addr)
		if err6 == nil {
			return c, nil
		}
		var dnsErr *net.DNSError
		if errors.As(err4, &dnsErr) || isNoSuitableAddress(err4) {
			return nil, err6 // the name has no IPv4 address: IPv6's error is the one that matters
		}
		return nil, err4
	}
}

// isNoSuitableAddress reports the error of a tcp4 dial to a name without IPv4 addresses.
func isNoSuitableAddress(err error) bool {
	var ae *net.AddrError
	return errors.As(err, &ae) && ae.Err == "no suitable address found"
}

// withNoDelay turns TCP_NODELAY off on what dial returns when tcp.no_delay is false.
func withNoDelay(t config.TCP, dial DialFunc) DialFunc {
	if t.NoDelay || dial == nil {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(false)
		}
		return c, err
	}
}
