//go:build unix

package relay

import (
	"errors"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// readAheadWorks: readSocket lets the relay and a BatchConn read without holding a buffer while
// it waits.
const readAheadWorks = true

// readSocket reads once from the socket into a buffer from pool (a big one if big), without holding
// a buffer while it waits: a read that finds nothing gives the buffer back before the runtime's
// poller waits for the socket, and takes one again when woken. A busy socket costs one read(2) a chunk, an idle one
// two per wake-up, as a plain blocking read would. With noWait it returns syscall.EAGAIN instead of
// waiting. The end of the stream is io.EOF; deadlines and Close end the wait as they end a Read. bp
// is nil unless n > 0.
func readSocket(rc syscall.RawConn, pool *sizedPool, big, noWait bool) (bp *[]byte, n int, err error) {
	var rerr error
	eagain := false
	err = rc.Read(func(fd uintptr) bool {
		eagain = false
		bp = pool.get(big)
		for {
			n, rerr = unix.Read(int(fd), *bp)
			if !errors.Is(rerr, unix.EINTR) {
				break
			}
		}
		if n > 0 {
			return true
		}
		pool.put(bp)
		bp = nil
		if errors.Is(rerr, unix.EAGAIN) {
			eagain = true
			return noWait // wait for the socket, holding nothing
		}
		return true
	})
	switch {
	case err != nil:
		return nil, 0, err
	case n > 0:
		return bp, n, nil
	case eagain && rerr != nil:
		return nil, 0, syscall.EAGAIN
	case rerr != nil:
		return nil, 0, os.NewSyscallError("read", rerr)
	}
	return nil, 0, io.EOF
}
