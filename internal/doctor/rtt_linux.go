package doctor

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// KernelRTT returns the kernel's smoothed round-trip time estimate (tcpi_rtt) of a TCP connection,
// unwrapping *tls.Conn and other wrappers that have NetConn().
func KernelRTT(c net.Conn) (time.Duration, error) {
	sc, ok := rawConn(c)
	if !ok {
		return 0, errors.New("tcpi_rtt: not a TCP connection")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("tcpi_rtt: %w", err)
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) { info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return 0, fmt.Errorf("tcpi_rtt: %w", err)
	}
	if serr != nil {
		return 0, fmt.Errorf("tcpi_rtt: %w", serr)
	}
	return time.Duration(info.Rtt) * time.Microsecond, nil
}

func rawConn(c net.Conn) (syscall.Conn, bool) {
	for range 8 {
		switch v := c.(type) {
		case syscall.Conn:
			return v, true
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil, false
		}
	}
	return nil, false
}
