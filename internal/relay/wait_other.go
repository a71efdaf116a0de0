//go:build !unix

package relay

import (
	"errors"
	"syscall"
)

// readAheadWorks is false here: the relay reads sockets with their own Read, holding its buffer
// while it waits, and a BatchConn passes reads through.
const readAheadWorks = false

func readSocket(syscall.RawConn, *sizedPool, bool, bool) (*[]byte, int, error) {
	return nil, 0, errors.ErrUnsupported
}
