//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package tcpopt

import (
	"runtime"
	"syscall"
)

// setReusePort fails: this OS has no SO_REUSEPORT.
func setReusePort(_, _ string, _ syscall.RawConn) error { return reusePortError(runtime.GOOS) }
