package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

func TestConnect(t *testing.T) {
	srv := startServer(t, nil)
	v4 := listenTarget(t, "tcp4", "127.0.0.1:0", answerAfterEOF)
	port := v4.Addr().(*net.TCPAddr).Port
	dests := []struct{ name, dest string }{
		{"ipv4", v4.Addr().String()},
		{"domain", net.JoinHostPort("localhost", strconv.Itoa(port))},
	}
	if v6, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		v6.Close()
		l := listenTarget(t, "tcp6", "[::1]:0", answerAfterEOF)
		dests = append(dests, struct{ name, dest string }{"ipv6", l.Addr().String()})
	} else {
		t.Logf("no IPv6 loopback, IPv6 destination not tested: %v", err)
	}
	for _, d := range dests {
		t.Run(d.name, func(t *testing.T) {
			tc, _ := dialTLS(t, srv.addr)
			// Header and first payload in one write, as the client sends them.
			msg := append(header(t, testPassword, trojan.CmdConnect, d.dest), "first payload"...)
			if _, err := tc.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := tc.Write([]byte(" and more")); err != nil {
				t.Fatal(err)
			}
			tc.CloseWrite() // the target answers only after EOF: half-close must pass through
			got, err := io.ReadAll(tc)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if want := "echo:first payload and more"; string(got) != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
	if st := srv.Stats(); st.Authenticated != int64(len(dests)) || st.Fallbacks != 0 {
		t.Fatalf("stats %+v, want %d authenticated and no fallback", st, len(dests))
	}
}

// TestConnectSplitHeader: a header spread over several TLS records still authenticates.
func TestConnectSplitHeader(t *testing.T) {
	srv := startServer(t, nil)
	target := listenTarget(t, "tcp", "127.0.0.1:0", answerAfterEOF)
	hdr := header(t, testPassword, trojan.CmdConnect, target.Addr().String())
	for _, cuts := range [][]int{{1}, {30}, {56}, {57}, {58}, {60}, {len(hdr) - 1}, {10, 56, 62}} {
		t.Run(fmt.Sprint(cuts), func(t *testing.T) {
			tc, _ := dialTLS(t, srv.addr)
			prev := 0
			for _, c := range append(cuts, len(hdr)) {
				if _, err := tc.Write(hdr[prev:c]); err != nil { // one record per write
					t.Fatal(err)
				}
				prev = c
				time.Sleep(5 * time.Millisecond) // let each record arrive on its own
			}
			tc.Write([]byte("payload"))
			tc.CloseWrite()
			got, err := io.ReadAll(tc)
			if err != nil || string(got) != "echo:payload" {
				t.Fatalf("got %q, %v; want echo:payload", got, err)
			}
		})
	}
}

// TestConnectTargetClosesFirst: the target sends and half-closes; the client sees EOF and can still
// send, and the target receives that.
func TestConnectTargetClosesFirst(t *testing.T) {
	srv := startServer(t, nil)
	received := make(chan string, 1)
	target := listenTarget(t, "tcp", "127.0.0.1:0", func(c *net.TCPConn) {
		c.Write([]byte("hello from target"))
		c.CloseWrite()
		b, _ := io.ReadAll(c)
		received <- string(b)
	})
	tc, _ := dialTLS(t, srv.addr)
	tc.Write(header(t, testPassword, trojan.CmdConnect, target.Addr().String()))
	got, err := io.ReadAll(tc)
	if err != nil || string(got) != "hello from target" {
		t.Fatalf("client got %q, %v", got, err)
	}
	if _, err := tc.Write([]byte("bye after EOF")); err != nil {
		t.Fatal(err)
	}
	tc.CloseWrite()
	select {
	case s := <-received:
		if s != "bye after EOF" {
			t.Fatalf("target got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("target did not get the client's bytes after its own half-close")
	}
	waitIdle(t, srv)
}

func TestConnectDialFailureAndUDP(t *testing.T) {
	srv := startServer(t, func(o *Options) { o.DialTimeout = time.Second })
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name string
		hdr  []byte
	}{
		{"refused", header(t, testPassword, trojan.CmdConnect, closed)},
		// UDP ASSOCIATE is served; a malformed first frame ends it without a fallback.
		{"udp", append(header(t, testPassword, trojan.CmdUDPAssociate, "127.0.0.1:53"), 9, 0, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialTLS(t, srv.addr)
			c.Write(tc.hdr)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(make([]byte, 10))
			if n != 0 || err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				t.Fatalf("read = %d, %v; want the server to close the connection", n, err)
			}
		})
	}
	if st := srv.Stats(); st.Fallbacks != 0 || st.Authenticated != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestLogsNoCredential: at debug level each connection logs one line, with the user's label and
// never the password or the full hash; at info level connections log nothing.
func TestLogsNoCredential(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var mu sync.Mutex
		var buf bytes.Buffer
		h := slog.NewJSONHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: level})
		fb := startFallback(t)
		srv := startServer(t, func(o *Options) { o.Logger = slog.New(h); o.Fallback = fb.addr })
		target := listenTarget(t, "tcp", "127.0.0.1:0", answerAfterEOF)
		c, _ := dialTLS(t, srv.addr)
		c.Write(append(header(t, testPassword, trojan.CmdConnect, target.Addr().String()), 'x'))
		c.CloseWrite()
		io.ReadAll(c)
		probeTLS(t, srv.addr, header(t, "wrong password", trojan.CmdConnect, "127.0.0.1:80"))
		waitIdle(t, srv)
		mu.Lock()
		out := buf.String()
		mu.Unlock()
		for _, secret := range []string{testPassword, trojan.HashPassword(testPassword).Hex(), trojan.HashPassword("wrong password").Hex()} {
			if strings.Contains(out, secret) {
				t.Fatalf("log at %v contains a credential:\n%s", level, out)
			}
		}
		lines := strings.Count(out, `"msg":"connection"`)
		switch level {
		case slog.LevelDebug:
			if lines != 2 || !strings.Contains(out, `"outcome":"connect"`) || !strings.Contains(out, `"user":"password #1"`) ||
				!strings.Contains(out, `"outcome":"fallback"`) || !strings.Contains(out, `"reason":"unknown password"`) {
				t.Fatalf("debug log lacks the two outcomes:\n%s", out)
			}
		default:
			if out != "" {
				t.Fatalf("info log is not empty:\n%s", out)
			}
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// waitIdle waits until the server handles no connection.
func waitIdle(t testing.TB, srv *testServer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().Active != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still active", srv.Stats().Active)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
