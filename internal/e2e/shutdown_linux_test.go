package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// failListener breaks the TCP listener on port inside process pid, as a listener that fails for
// good would: it takes a copy of the socket (pidfd_getfd) and shuts it down, after which the
// process's accept returns EINVAL.
func failListener(t *testing.T, pid, port int) {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v (needs Linux ≥ 5.3)", err)
	}
	defer unix.Close(pidfd)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if !strings.HasPrefix(target, "socket:") {
			continue
		}
		n, _ := strconv.Atoi(e.Name())
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if errors.Is(err, unix.EPERM) {
			t.Skipf("pidfd_getfd: %v (needs the right to ptrace the server: root, or its parent)", err)
		}
		if err != nil {
			continue
		}
		listening, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		sa, _ := unix.Getsockname(fd)
		if in4, ok := sa.(*unix.SockaddrInet4); ok && listening == 1 && in4.Port == port {
			err := unix.Shutdown(fd, unix.SHUT_RDWR)
			unix.Close(fd)
			if err != nil {
				t.Fatalf("shut the listener down: %v", err)
			}
			return
		}
		unix.Close(fd)
	}
	t.Fatalf("no listening socket on port %d in process %d", port, pid)
}

// TestSIGTERMAfterListenerFailure: the server's listener fails while a tunnel is open; SIGTERM then
// ends the process within fastrojan.shutdown_timeout + 1 s (the drain after a listener error is
// bounded like the one after SIGTERM, instead of waiting for the tunnel forever).
func TestSIGTERMAfterListenerFailure(t *testing.T) {
	const shutdownTimeout = 2 * time.Second
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	fallback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(fallback.Close)
	sport, cport := freePort(t), freePort(t)
	scfg := serverConfig(sport, fallback.Listener.Addr().String(), "s3cret", cert, key)
	scfg["fastrojan"] = map[string]any{"shutdown_timeout": shutdownTimeout.String()}
	srv := start(t, binary, "-c", writeJSON(t, dir, "server.json", scfg))
	waitListening(t, srv, fmt.Sprintf("127.0.0.1:%d", sport))
	cl := start(t, binary, "-c", writeJSON(t, dir, "client.json", clientConfig(cport, sport, "s3cret", cert)))
	socks := fmt.Sprintf("127.0.0.1:%d", cport)
	waitListening(t, cl, socks)

	// A tunnel, open and idle.
	conn := socksDial(t, socks, startEchoOrigin(t, "tcp", "127.0.0.1:0"))
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 5)
	if _, err := io.WriteString(conn, "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}

	failListener(t, srv.cmd.Process.Pid, sport)
	// The listener is gone: connections are refused.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", sport), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the failed listener still accepts:\n%s", srv.Output())
		}
	}

	// The server noticed (its accept loop ended with the listener's error) before the SIGTERM, so
	// the SIGTERM lands in the drain that the failure began.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(srv.Output(), "invalid argument"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server's log does not say why it stops (its listener failed):\n%s", srv.Output())
		}
	}

	start := time.Now()
	err := srv.stop(shutdownTimeout + time.Second)
	took := time.Since(start)
	if err != nil && strings.Contains(err.Error(), "no exit") {
		t.Fatalf("SIGTERM with a tunnel open after the listener failed: %v (shutdown_timeout %s)\n%s", err, shutdownTimeout, srv.Output())
	}
	t.Logf("exited %s after SIGTERM (shutdown_timeout %s), status %v", took.Round(time.Millisecond), shutdownTimeout, err)
}
