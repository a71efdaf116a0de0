//go:build !linux

package tfo

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// KernelRTT returns the kernel's smoothed round-trip time estimate of a TCP connection; Linux only.
func KernelRTT(net.Conn) (time.Duration, error) {
	return 0, fmt.Errorf("tcpi_rtt: %w", errors.ErrUnsupported)
}

// SYNUnanswered reports false: the kernel's view of a connection is read on Linux only.
func SYNUnanswered(net.Conn) bool { return false }
