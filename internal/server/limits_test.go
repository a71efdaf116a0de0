package server

import (
	"io"
	"net"
	"testing"
	"time"
)

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedSoon reports whether the server ended c within d.
func closedSoon(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// TestMaxConnsPerIP: an address holding MaxConnsPerIP connections gets its next one closed at once
// (and counted); other addresses are not affected; a freed slot is usable again.
func TestMaxConnsPerIP(t *testing.T) {
	srv := startServer(t, func(o *Options) { o.MaxConnsPerIP = 3 })
	var held []net.Conn
	for range 3 {
		held = append(held, dialFrom(t, "127.0.0.1", srv.addr))
	}
	for deadline := time.Now().Add(5 * time.Second); srv.Stats().Active < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("connections not accepted")
		}
	}
	if c := dialFrom(t, "127.0.0.1", srv.addr); !closedSoon(c, 2*time.Second) {
		t.Fatal("a 4th connection from one address was kept")
	}
	if c := dialFrom(t, "127.0.0.2", srv.addr); closedSoon(c, 300*time.Millisecond) {
		t.Fatal("another address was refused")
	}
	if st := srv.Stats(); st.RefusedPerIP != 1 || st.ClientIPs != 2 {
		t.Fatalf("stats %+v: want 1 refused, 2 client addresses", st)
	}
	held[0].Close()
	for deadline := time.Now().Add(5 * time.Second); srv.Stats().Active > 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the closed connection stays active")
		}
	}
	c := dialFrom(t, "127.0.0.1", srv.addr)
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(c); len(b) == 0 {
		t.Fatal("a freed slot was not usable again")
	}
}

// TestMaxConnsCountsWaits: with MaxConns handled at once the server stops accepting (new connections
// wait in the backlog, they are not refused) and counts it; they are served once a slot frees.
func TestMaxConnsCountsWaits(t *testing.T) {
	srv := startServer(t, func(o *Options) { o.MaxConns = 2 })
	a := dialFrom(t, "127.0.0.1", srv.addr)
	dialFrom(t, "127.0.0.1", srv.addr)
	third := dialFrom(t, "127.0.0.1", srv.addr)
	for deadline := time.Now().Add(5 * time.Second); srv.Stats().FullWaits == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: no wait for a slot counted", srv.Stats())
		}
	}
	third.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	a.Close()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(third); len(b) == 0 {
		t.Fatal("the waiting connection was never served")
	}
}
