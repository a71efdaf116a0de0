package tfo_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tfo/tfotest"
)

func TestMain(m *testing.M) { tfotest.Main(m) }

// Helpers shared with the whole-proxy lab tests (internal/e2e/labproxy).
var (
	host        = tfotest.Host
	echoServer  = tfotest.EchoServer
	dialIn      = tfotest.DialIn
	roundTrip   = tfotest.RoundTrip
	tcpExt      = tfotest.TcpExt
	cacheCookie = tfotest.CacheCookie
	closedPort  = tfotest.ClosedPort
)

type logBuf = tfotest.LogBuf

// The first connection asks for a cookie; from the second on the first write rides in the SYN and
// both ends read "accepted" from the kernel, which counts the same.
func TestOutcomesWithCookie(t *testing.T) {
	h := host(t, 3)
	var logs logBuf
	addr, server := echoServer(t, h, logs.Logger())
	d := &tfo.Dialer{Logger: logs.Logger()}
	active, passive := tcpExt(t, h, "TCPFastOpenActive"), tcpExt(t, h, "TCPFastOpenPassive")
	want := []struct{ client, server tfo.Outcome }{
		{tfo.CookieRequested, tfo.NotAttempted},
		{tfo.Accepted, tfo.Accepted},
		{tfo.Accepted, tfo.Accepted},
	}
	for i, w := range want {
		c := dialIn(t, h, d, addr)
		roundTrip(t, c, fmt.Sprintf("hello %d", i))
		if got := tfo.ClientOutcome(c); got != w.client {
			t.Errorf("connection %d: client outcome %s, want %s", i, got, w.client)
		}
		if got := <-server; got != w.server {
			t.Errorf("connection %d: server outcome %s, want %s", i, got, w.server)
		}
		c.Close()
	}
	if da, dp := tcpExt(t, h, "TCPFastOpenActive")-active, tcpExt(t, h, "TCPFastOpenPassive")-passive; da != 2 || dp != 2 {
		t.Errorf("kernel counted TCPFastOpenActive +%d, TCPFastOpenPassive +%d; want +2 each", da, dp)
	}
	if logs.String() != "" {
		t.Errorf("unexpected log output with TFO fully enabled:\n%s", logs.String())
	}
}

// Without the client bit the dial works without TFO, one warning names the fix, and the outcome says
// unsupported.
func TestDialWithoutClientBit(t *testing.T) {
	h := host(t, 2)
	addr, _ := echoServer(t, h, nil)
	var logs logBuf
	d := &tfo.Dialer{Logger: logs.Logger()}
	for i := range 3 {
		c := dialIn(t, h, d, addr)
		roundTrip(t, c, "plain")
		var got tfo.Outcome
		_ = h.Do(func() error { got = tfo.ClientOutcome(c); return nil }) // reads the host's sysctl
		if got != tfo.Unsupported {
			t.Errorf("connection %d: outcome %s, want unsupported", i, got)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want exactly 1:\n%s", n, out)
	}
	if !strings.Contains(out, `fix="sysctl -w net.ipv4.tcp_fastopen=3"`) || !strings.Contains(out, "client bit 0x1") {
		t.Errorf("warning does not name the missing bit and the fix:\n%s", out)
	}
}

// Without the server bit the listener works, one warning names the fix, and clients keep asking for
// a cookie they never get.
func TestListenWithoutServerBit(t *testing.T) {
	h := host(t, 1)
	var logs logBuf
	addr, server := echoServer(t, h, logs.Logger())
	out := logs.String()
	if strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "server bit 0x2") ||
		!strings.Contains(out, `fix="sysctl -w net.ipv4.tcp_fastopen=3"`) {
		t.Errorf("want one warning naming the server bit and the fix, got:\n%s", out)
	}
	d := &tfo.Dialer{}
	for i := range 3 {
		c := dialIn(t, h, d, addr)
		roundTrip(t, c, "no tfo here")
		if got := tfo.ClientOutcome(c); got != tfo.CookieRequested {
			t.Errorf("connection %d: client outcome %s, want cookie_requested", i, got)
		}
		if got := <-server; got != tfo.NotAttempted {
			t.Errorf("connection %d: server outcome %s, want not_attempted", i, got)
		}
	}
}

// The kernel fact the client design rests on (DESIGN.md 3.1): with a cookie cached, connecting to a
// closed port succeeds, and the refusal shows only on the first read after the first write.
func TestRefusalSurfacesAfterFirstWrite(t *testing.T) {
	h := host(t, 3)
	cacheCookie(t, h)
	addr := closedPort(t, h)
	var c net.Conn
	if err := h.Do(func() (err error) {
		c, err = (&tfo.Dialer{}).DialContext(context.Background(), "tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("with a cookie the connect should return at once without error; got %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ClientHello")); err != nil {
		t.Fatalf("first write: %v", err)
	}
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("first read: %v, want connection refused", err)
	}
}

// A connection that reads before it writes never connects once a cookie is cached: the kernel waits
// for data to put in the SYN. This is why the server dials targets with TFO only when it has a first
// payload to write (server.Options.DialFirst).
func TestReadFirstNeverConnects(t *testing.T) {
	h := host(t, 3)
	cacheCookie(t, h)
	addr, server := echoServer(t, h, nil)
	c := dialIn(t, h, &tfo.Dialer{}, addr)
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read before write: %v, want a timeout", err)
	}
	select {
	case o := <-server:
		t.Fatalf("the server accepted a connection (%s) although nothing was written", o)
	default:
	}
}
