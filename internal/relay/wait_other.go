//go:build !unix

package relay

import (
	"errors"
	"syscall"
)

// waitReadable returns at once where peeking a socket is not wired up: the next Read then waits
// with its buffer, as it always did.
func waitReadable(syscall.RawConn) error { return nil }

// readAheadWorks is false here: a BatchConn passes reads through.
const readAheadWorks = false

func readNow(syscall.RawConn, []byte) (int, error) { return 0, errors.ErrUnsupported }
