//go:build !linux

package tfo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"syscall"
)

// fastrojan uses TFO on Linux only; elsewhere it dials and listens without it.
func (d *Dialer) enable(string, syscall.RawConn) error {
	d.warn("TCP Fast Open is not supported by fastrojan on " + runtime.GOOS + "; connecting without it")
	return nil
}

// Listen listens on top of lc, without TCP Fast Open on this OS; MPTCP is off.
func (lc ListenConfig) Listen(ctx context.Context, network, addr string, qlen int, log *slog.Logger) (*net.TCPListener, error) {
	if log == nil {
		log = slog.Default()
	}
	nlc := net.ListenConfig(lc)
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
	log.Warn("TCP Fast Open is not supported by fastrojan on "+runtime.GOOS+"; accepting without it", "addr", tl.Addr().String())
	return tl, nil
}

// ReadSysctl reports errors.ErrUnsupported: net.ipv4.tcp_fastopen exists on Linux only.
func ReadSysctl() (Sysctl, error) {
	return 0, fmt.Errorf("read %s on %s: %w", SysctlKey, runtime.GOOS, errors.ErrUnsupported)
}

// ClientOutcome reports Unsupported: TFO is used on Linux only.
func ClientOutcome(net.Conn) Outcome { return Unsupported }

// ServerOutcome reports Unsupported: TFO is used on Linux only.
func ServerOutcome(net.Conn) Outcome { return Unsupported }

// ReadTcpExt reports errors.ErrUnsupported: /proc/net/netstat exists on Linux only.
func ReadTcpExt() (map[string]uint64, error) {
	return nil, fmt.Errorf("read TcpExt counters on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// EnableListener reports errors.ErrUnsupported: fastrojan uses TFO on Linux only.
func EnableListener(ln *net.TCPListener, _ int, _ *slog.Logger) error {
	return fmt.Errorf("tfo: listener %s on %s: %w", ln.Addr(), runtime.GOOS, errors.ErrUnsupported)
}
