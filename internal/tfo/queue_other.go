//go:build !linux

package tfo

import (
	"errors"
	"fmt"
	"net"
	"runtime"
)

// ListenBacklog returns 4096: the TFO queue is a Linux matter.
func ListenBacklog() int { return 4096 }

// ListenerQueue reports errors.ErrUnsupported: fastrojan reads listener queues on Linux only.
func ListenerQueue(any) (QueueInfo, error) {
	return QueueInfo{}, fmt.Errorf("listener queue on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// ResetIfHalfOpen does nothing: fastrojan uses TFO on Linux only.
func ResetIfHalfOpen(net.Conn) bool { return false }
