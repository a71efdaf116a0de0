package tfo

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tcpSYNSent is tcpi_state while a connection waits for the answer to its SYN.
const tcpSYNSent = 2

// kernelInfo reads TCP_INFO of the socket under c (unwrapping *tls.Conn and other NetConn wrappers).
func kernelInfo(c net.Conn) (*unix.TCPInfo, error) {
	rc, ok := syscallConn(c)
	if !ok {
		return nil, errors.New("tcp_info: not a TCP connection")
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) { info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return nil, fmt.Errorf("tcp_info: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("tcp_info: %w", serr)
	}
	return info, nil
}

// KernelRTT returns the kernel's smoothed round-trip time estimate (tcpi_rtt) of a TCP connection,
// unwrapping *tls.Conn and other wrappers that have NetConn().
func KernelRTT(c net.Conn) (time.Duration, error) {
	info, err := kernelInfo(c)
	if err != nil {
		return 0, fmt.Errorf("tcpi_rtt: %w", err)
	}
	return time.Duration(info.Rtt) * time.Microsecond, nil
}

// SYNUnanswered reports whether a dialed connection is still waiting for the answer to its SYN
// (tcpi_state SYN_SENT). For a TFO connection whose first write has gone out, a SYN left unanswered
// while a plain SYN to the same server got through is a middlebox dropping SYNs that carry data.
func SYNUnanswered(c net.Conn) bool {
	info, err := kernelInfo(c)
	return err == nil && info.State == tcpSYNSent
}
