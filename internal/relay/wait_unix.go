//go:build unix

package relay

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// waitReadable blocks until the socket has bytes, EOF or an error to read, or its read deadline
// passes, without a buffer: it peeks one byte into the stack and lets the runtime's poller wait when
// there is none. Deadlines and Close end the wait as they end a Read. A socket error found by the peek
// (a reset) is returned here, since reading it clears it and the next Read would not see it.
func waitReadable(rc syscall.RawConn) error {
	var b [1]byte
	var perr error
	err := rc.Read(func(fd uintptr) bool {
		_, _, perr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return !errors.Is(perr, unix.EAGAIN)
	})
	if err != nil {
		return err
	}
	if perr != nil && !errors.Is(perr, unix.EINTR) { // interrupted: let the Read find out
		return os.NewSyscallError("recvfrom", perr)
	}
	return nil
}

// readAheadWorks: readNow and waitReadable let a BatchConn read ahead without holding a buffer while
// it waits.
const readAheadWorks = true

// readNow reads from the socket without waiting: EAGAIN when it has nothing. A read that returns 0
// with no error is the end of the stream (io.EOF from the caller's view). Deadlines apply as to Read.
func readNow(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), b)
			if !errors.Is(rerr, unix.EINTR) {
				return true
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		if errors.Is(rerr, unix.EAGAIN) {
			return 0, syscall.EAGAIN
		}
		return 0, os.NewSyscallError("read", rerr)
	}
	return max(n, 0), nil
}
