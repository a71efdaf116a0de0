package server

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// DialFirst (the TFO dial) is used only for targets that get a first payload: a TFO connect with
// nothing to write would wait forever. OnConn reports each connection once, with its handshake time.
func TestDialFirstOnlyWithPayload(t *testing.T) {
	target := listenTarget(t, "tcp", "127.0.0.1:0", func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.Copy(c, c)
	})
	var mu sync.Mutex
	var firstDials int
	var infos []ConnInfo
	ts := startServer(t, func(o *Options) {
		o.DialFirst = func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			firstDials++
			mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		o.OnConn = func(ci ConnInfo) {
			mu.Lock()
			infos = append(infos, ci)
			mu.Unlock()
		}
	})
	for _, payload := range []string{"", "GET / HTTP/1.1\r\n\r\n"} {
		tc, _ := dialTLS(t, ts.addr)
		req := append(header(t, testPassword, trojan.CmdConnect, target.Addr().String()), payload...)
		if _, err := tc.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := tc.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		want := payload + "ping"
		got := make([]byte, len(want))
		if _, err := io.ReadFull(tc, got); err != nil || string(got) != want {
			t.Fatalf("echo %q, %v; want %q", got, err, want)
		}
		tc.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(infos)
		mu.Unlock()
		if n == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if firstDials != 1 {
		t.Errorf("DialFirst used %d times, want 1 (only the request with a payload)", firstDials)
	}
	if len(infos) != 2 {
		t.Fatalf("OnConn called %d times, want 2", len(infos))
	}
	for i, ci := range infos {
		if ci.Outcome != outConnect || !ci.Dialed || ci.Handshake <= 0 || ci.Dest != target.Addr().String() || ci.Up == 0 || ci.Down == 0 {
			t.Errorf("connection %d: %+v", i, ci)
		}
		// Plain loopback sockets: nothing tried TFO.
		if ci.TFOAccept != tfo.NotAttempted || ci.TFODial != tfo.NotAttempted {
			t.Errorf("connection %d: tfo accept %s dial %s, want not_attempted", i, ci.TFOAccept, ci.TFODial)
		}
	}
}
