package tfo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// enable sets TCP_FASTOPEN_CONNECT on a socket being dialed. When the kernel or the namespace's
// sysctl refuses, the dial goes on without TFO and the Dialer warns once.
func (d *Dialer) enable(network string, c syscall.RawConn) error {
	if !strings.HasPrefix(network, "tcp") {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1)
	}); err != nil {
		return fmt.Errorf("tfo: %w", err)
	}
	if serr == nil {
		return nil
	}
	if errors.Is(serr, unix.EOPNOTSUPP) || errors.Is(serr, unix.ENOPROTOOPT) {
		// Read here: this thread is in the namespace the socket belongs to.
		s, err := ReadSysctl()
		if err == nil && !s.Client() {
			d.warn("TCP Fast Open is off for outgoing connections: "+SysctlKey+" lacks the client bit 0x1; connecting without it",
				"tcp_fastopen", int(s), "fix", s.Fix())
		} else {
			d.warn("TCP Fast Open is off for outgoing connections: the kernel refused TCP_FASTOPEN_CONNECT; connecting without it",
				"err", serr, "fix", "a Linux kernel ≥ 4.11 and "+Sysctl(0).Fix())
		}
		return nil
	}
	return fmt.Errorf("tfo: setsockopt TCP_FASTOPEN_CONNECT: %w", serr)
}

// Listen is the package's Listen on top of lc: lc's KeepAlive settings and Control (run first, for
// options such as SO_REUSEPORT that must be set before bind) are kept; MPTCP is off.
func (lc ListenConfig) Listen(ctx context.Context, network, addr string, qlen int, log *slog.Logger) (*net.TCPListener, error) {
	if log == nil {
		log = slog.Default()
	}
	if qlen < 1 {
		qlen = DefaultQueueLen
	}
	var optErr error
	nlc := net.ListenConfig(lc)
	base := nlc.Control
	nlc.Control = func(network, address string, c syscall.RawConn) error {
		if base != nil {
			if err := base(network, address, c); err != nil {
				return err
			}
		}
		return c.Control(func(fd uintptr) {
			optErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN, qlen)
		})
	}
	nlc.SetMultipathTCP(false)
	ln, err := nlc.Listen(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		_ = ln.Close()
		return nil, fmt.Errorf("listen %s: network %q is not TCP", addr, network)
	}
	if optErr != nil {
		log.Warn("TCP Fast Open is off on this listener: the kernel refused TCP_FASTOPEN; accepting without it",
			"addr", tl.Addr().String(), "err", optErr)
		return tl, nil
	}
	if s, err := ReadSysctl(); err == nil && !s.Server() {
		log.Warn("TCP Fast Open is off on this listener: "+SysctlKey+" lacks the server bit 0x2; clients fall back to a normal handshake",
			"addr", tl.Addr().String(), "tcp_fastopen", int(s), "fix", s.Fix())
	}
	return tl, nil
}

// ReadSysctl reads net.ipv4.tcp_fastopen of the calling thread's network namespace.
func ReadSysctl() (Sysctl, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_fastopen")
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", SysctlKey, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", SysctlKey, err)
	}
	return Sysctl(v), nil
}

// tcp_info layout (include/uapi/linux/tcp.h): byte 5 is tcpi_options; byte 7 holds, from its lowest
// bit on a little-endian machine, tcpi_delivery_rate_app_limited:1 and tcpi_fastopen_client_fail:2
// (Linux ≥ 5.5; x/sys calls this byte padding, so the raw struct is read).
const (
	tcpiOptionsByte = 5
	tcpiFailByte    = 7

	tcpiOptSYNData  = 0x20 // TCPI_OPT_SYN_DATA
	tcpiOptTFOChild = 0x80 // TCPI_OPT_TFO_CHILD, Linux ≥ 6.16
)

// tcpInfo returns tcpi_options and tcpi_fastopen_client_fail of the socket, and whether the socket
// was asked for TCP_FASTOPEN_CONNECT.
func tcpInfo(rc syscall.RawConn) (options, clientFail byte, fastOpenConnect bool, err error) {
	var raw [256]byte
	n := uint32(len(raw))
	var errno syscall.Errno
	var foc int
	var focErr error
	if cerr := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
			uintptr(unsafe.Pointer(&raw[0])), uintptr(unsafe.Pointer(&n)), 0)
		foc, focErr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT)
	}); cerr != nil {
		return 0, 0, false, cerr
	}
	if errno != 0 {
		return 0, 0, false, fmt.Errorf("getsockopt TCP_INFO: %w", errno)
	}
	if n <= tcpiOptionsByte {
		return 0, 0, false, fmt.Errorf("getsockopt TCP_INFO: %d bytes", n)
	}
	options = raw[tcpiOptionsByte]
	if n > tcpiFailByte {
		clientFail = failBits(raw[tcpiFailByte])
	}
	return options, clientFail, focErr == nil && foc != 0, nil
}

// failBits extracts tcpi_fastopen_client_fail from its byte. C bit-fields are laid out from the low
// bit on little-endian machines and from the high bit on big-endian ones.
func failBits(b byte) byte {
	if bigEndian {
		return b >> 5 & 3
	}
	return b >> 1 & 3
}

var bigEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 0
}()

// ClientOutcome reads the TFO outcome of a dialed connection from the kernel. Call it once the peer
// has answered (after the TLS handshake, or at the end of the connection); before that the kernel
// does not know yet. c may be a *tls.Conn or another wrapper with NetConn(). A connection dialed
// without TCP_FASTOPEN_CONNECT reports NotAttempted, or Unsupported when the calling thread's
// namespace has the client bit off (read from /proc/sys, only for such connections).
func ClientOutcome(c net.Conn) Outcome {
	rc, ok := syscallConn(c)
	if !ok {
		return NotAttempted
	}
	options, fail, foc, err := tcpInfo(rc)
	if err != nil {
		return NotAttempted
	}
	if !foc {
		if s, err := ReadSysctl(); err == nil && !s.Client() {
			return Unsupported
		}
		return NotAttempted
	}
	return clientOutcome(options, fail)
}

func clientOutcome(options, fail byte) Outcome {
	if options&tcpiOptSYNData != 0 {
		return Accepted
	}
	switch fail {
	case 1:
		return CookieRequested
	case 2:
		return DataNotAccepted
	case 3:
		return SYNDataDropped
	}
	return NotAttempted
}

// ServerOutcome reads the TFO outcome of an accepted connection: Accepted when the kernel created it
// from a SYN whose data it accepted (TCPI_OPT_SYN_DATA, and TCPI_OPT_TFO_CHILD on Linux ≥ 6.16),
// NotAttempted otherwise. Call it right after Accept.
func ServerOutcome(c net.Conn) Outcome {
	rc, ok := syscallConn(c)
	if !ok {
		return NotAttempted
	}
	options, _, _, err := tcpInfo(rc)
	if err != nil {
		return NotAttempted
	}
	if options&(tcpiOptSYNData|tcpiOptTFOChild) != 0 {
		return Accepted
	}
	return NotAttempted
}

// ReadTcpExt returns the TcpExt counters (/proc/net/netstat) of the process's network namespace.
func ReadTcpExt() (map[string]uint64, error) {
	raw, err := os.ReadFile("/proc/self/net/netstat")
	if err != nil {
		return nil, fmt.Errorf("read TcpExt counters: %w", err)
	}
	m, err := ParseNetstat(raw, "TcpExt")
	if err != nil {
		return nil, fmt.Errorf("/proc/self/net/netstat: %w", err)
	}
	return m, nil
}

// EnableListener turns TCP Fast Open on for a socket that is already listening, such as one systemd
// handed over by socket activation: TCP_FASTOPEN with queue length qlen (DefaultQueueLen if < 1). As
// with Listen, a namespace whose net.ipv4.tcp_fastopen lacks the server bit gets a warning.
func EnableListener(ln *net.TCPListener, qlen int, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if qlen < 1 {
		qlen = DefaultQueueLen
	}
	rc, err := ln.SyscallConn()
	if err != nil {
		return fmt.Errorf("tfo: listener %s: %w", ln.Addr(), err)
	}
	var optErr error
	if err := rc.Control(func(fd uintptr) {
		optErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN, qlen)
	}); err != nil {
		return fmt.Errorf("tfo: listener %s: %w", ln.Addr(), err)
	}
	if optErr != nil {
		return fmt.Errorf("tfo: setsockopt TCP_FASTOPEN on listener %s: %w", ln.Addr(), optErr)
	}
	if s, err := ReadSysctl(); err == nil && !s.Server() {
		log.Warn("TCP Fast Open is off on this listener: "+SysctlKey+" lacks the server bit 0x2; clients fall back to a normal handshake",
			"addr", ln.Addr().String(), "tcp_fastopen", int(s), "fix", s.Fix())
	}
	return nil
}
