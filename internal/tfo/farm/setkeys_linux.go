package farm

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// SetKeys gives the listening socket ln the keys ks (TCP_FASTOPEN_KEY with primary and backup, Linux
// ≥ 5.3). It changes which cookies new SYNs are checked against and nothing else.
func SetKeys(ln syscall.Conn, ks KeySet) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return fmt.Errorf("set TFO keys: %w", err)
	}
	b := ks.Bytes()
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN_KEY, string(b))
	}); err != nil {
		return fmt.Errorf("set TFO keys: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set TFO keys (setsockopt TCP_FASTOPEN_KEY, 32 bytes, needs Linux ≥ 5.3): %w", serr)
	}
	return nil
}
