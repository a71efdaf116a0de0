//go:build !linux

package farm

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
)

// SetKeys is Linux-only (TCP_FASTOPEN_KEY); elsewhere it returns an error wrapping
// errors.ErrUnsupported.
func SetKeys(ln syscall.Conn, ks KeySet) error {
	return fmt.Errorf("set TFO keys: TCP_FASTOPEN_KEY exists only on Linux, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
