package pool

import (
	"net"

	"golang.org/x/sys/unix"
)

// alive reports whether the server has neither closed (FIN) nor reset c, without reading from it:
// a TLS 1.3 server's session tickets may be waiting in the socket, so readable data alone says
// nothing; POLLRDHUP says the server sent its FIN, POLLHUP/POLLERR a reset or error.
func alive(c net.Conn) bool {
	rc := socket(c)
	if rc == nil {
		return true // not a socket (tests' pipes): nothing to check
	}
	ok := true
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		for {
			n, err := unix.Poll(fds, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				return
			}
			ok = fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) == 0
			return
		}
	})
	return ok
}
