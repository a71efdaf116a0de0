//go:build !linux

package doctor

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
