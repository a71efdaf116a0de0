//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package tcpopt

import (
	"fmt"
	"runtime"
	"syscall"
)

// setReusePort fails: this OS has no SO_REUSEPORT.
func setReusePort(_, _ string, _ syscall.RawConn) error {
	return fmt.Errorf("tcp.reuse_port: SO_REUSEPORT is not available on %s; set it to false", runtime.GOOS)
}
