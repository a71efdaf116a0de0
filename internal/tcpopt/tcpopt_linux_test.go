package tcpopt

import (
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fastrojan/fastrojan/internal/config"
)

func sockopt(t *testing.T, c syscall.Conn, level, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil || serr != nil {
		t.Fatalf("getsockopt: %v %v", err, serr)
	}
	return v
}

// TestTCPOptionsReusePort: with tcp.reuse_port two processes (here two listeners) share a port, as
// with trojan-gfw; without it the second bind fails.
func TestTCPOptionsReusePort(t *testing.T) {
	on := config.Default("server").TCP
	on.ReusePort = true
	a, err := Listen(on, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Listen(on, a.Addr().String())
	if err != nil {
		t.Fatalf("second listener with tcp.reuse_port: %v", err)
	}
	b.Close()
	if c, err := Listen(config.Default("server").TCP, a.Addr().String()); err == nil {
		c.Close()
		t.Fatal("second listener without tcp.reuse_port bound the same port")
	}
}

// TestTCPOptionsNoDelayKeepAlive: trojan-gfw's defaults leave TCP_NODELAY and SO_KEEPALIVE on for
// accepted and dialled connections; switching them off in the config turns them off on both.
func TestTCPOptionsNoDelayKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		name               string
		noDelay, keepAlive bool
	}{{"defaults", true, true}, {"both off", false, false}} {
		t.Run(tc.name, func(t *testing.T) {
			opts := config.Default("server").TCP
			opts.NoDelay, opts.KeepAlive = tc.noDelay, tc.keepAlive
			ln, err := Listen(opts, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			dial := PlainDial(opts)
			if dial == nil {
				var d net.Dialer
				dial = d.DialContext
			}
			out, err := dial(t.Context(), "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			in, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			want := map[bool]int{true: 1, false: 0}
			for side, c := range map[string]net.Conn{"accepted": in, "dialled": out} {
				sc := c.(syscall.Conn)
				if got := sockopt(t, sc, unix.IPPROTO_TCP, unix.TCP_NODELAY); (got != 0) != tc.noDelay {
					t.Errorf("%s: TCP_NODELAY %d, want %d", side, got, want[tc.noDelay])
				}
				if got := sockopt(t, sc, unix.SOL_SOCKET, unix.SO_KEEPALIVE); (got != 0) != tc.keepAlive {
					t.Errorf("%s: SO_KEEPALIVE %d, want %d", side, got, want[tc.keepAlive])
				}
			}
		})
	}
}
