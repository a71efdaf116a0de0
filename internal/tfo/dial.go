package tfo

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"syscall"
)

// Dialer dials TCP with TCP Fast Open. Its DialContext has the shape of net.Dialer.DialContext, so it
// plugs in wherever a dial function is wanted. The zero value is ready to use.
//
// With a cookie cached for the server the connection is returned before anything is sent: write first
// (the first write rides in the SYN) and bound the first exchange with a deadline, which is then the
// real connect timeout; Dialer.Timeout only bounds connects without a cookie. Refused and unreachable
// servers surface as errors of the first read. For the same reason a dial to a name with several
// addresses cannot fall back to the next address (Happy Eyeballs): the first connect "succeeds".
type Dialer struct {
	// Dialer holds the ordinary settings (LocalAddr, KeepAlive, Timeout, Control, ...). Its Control or
	// ControlContext runs before TFO is switched on.
	Dialer net.Dialer
	// Logger gets the one warning when TFO is unavailable; nil means slog.Default().
	Logger *slog.Logger

	warnOnce sync.Once
}

// DialContext connects to address on the named network ("tcp", "tcp4", "tcp6") with TFO. If the
// system refuses TFO it connects without it and logs one warning naming the fix.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	nd := d.Dialer
	baseCtx, base := nd.ControlContext, nd.Control
	nd.Control = nil
	nd.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		switch {
		case baseCtx != nil:
			if err := baseCtx(ctx, network, address, c); err != nil {
				return err
			}
		case base != nil:
			if err := base(network, address, c); err != nil {
				return err
			}
		}
		return d.enable(network, c)
	}
	return nd.DialContext(ctx, network, address)
}

// warn logs why TFO is off for dials, once per Dialer.
func (d *Dialer) warn(msg string, args ...any) {
	d.warnOnce.Do(func() {
		log := d.Logger
		if log == nil {
			log = slog.Default()
		}
		log.Warn(msg, args...)
	})
}

// DefaultQueueLen is the TFO queue length Listen uses for qlen < 1 (trojan-gfw's fast_open_qlen).
const DefaultQueueLen = 20

// Listen listens on addr with TCP_FASTOPEN set to qlen (pending TFO children; the kernel caps it at
// net.core.somaxconn) and MPTCP off (DESIGN.md 3.6). If TFO cannot work on it (the option is
// refused, the namespace's net.ipv4.tcp_fastopen lacks the server bit 0x2, or the OS is not Linux)
// the listener works without it and log gets one warning naming the fix. log nil means
// slog.Default().
func Listen(ctx context.Context, network, addr string, qlen int, log *slog.Logger) (*net.TCPListener, error) {
	return ListenConfig{}.Listen(ctx, network, addr, qlen, log)
}

// ListenConfig carries the ordinary listener settings (KeepAlive, KeepAliveConfig, Control) into a
// TFO listener; see its Listen method.
type ListenConfig net.ListenConfig
