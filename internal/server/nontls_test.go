package server

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// TestTLSSiteByteExact: with tls_site, bytes that are not TLS reach that site exactly as sent, and
// the prober gets exactly the site's answer.
func TestTLSSiteByteExact(t *testing.T) {
	site := startFallback(t)
	srv := startServer(t, func(o *Options) { o.TLSSite = site.addr })
	t.Run("plain HTTP on the TLS port", func(t *testing.T) {
		compareProbe(t, srv, site, []byte("GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: probe\r\n\r\n"), true)
	})
	t.Run("plain garbage on the TLS port", func(t *testing.T) {
		compareProbe(t, srv, site, []byte("\x00\x01\x02 not tls at all\r\n\r\n"), true)
	})
	if st := srv.Stats(); st.TLSSite != 2 || st.Decoys != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestTLSSiteReset: a site that resets the connection makes the server reset the client's too.
func TestTLSSiteReset(t *testing.T) {
	site := listenTarget(t, "tcp", "127.0.0.1:0", func(c *net.TCPConn) {
		c.Read(make([]byte, 100))
		c.SetLinger(0)
	})
	srv := startServer(t, func(o *Options) { o.TLSSite = site.Addr().String() })
	c, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want a reset like the site's", err)
	}
}

// TestDecoyNeverReachesFallback: without tls_site, plain HTTP on the TLS port gets nginx's 400 page
// and a FIN, and the fallback site (which would answer 200 in plaintext) never sees it.
func TestDecoyNeverReachesFallback(t *testing.T) {
	fb := startFallback(t)
	srv := startServer(t, func(o *Options) { o.Fallback = fb.addr })
	for _, in := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\x00\x01\x02 not tls at all\r\n\r\n"} {
		c, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(in))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("read: %v, want a FIN", err)
		}
		if !bytes.HasPrefix(got, []byte("HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n")) {
			t.Fatalf("answer %q", got)
		}
	}
	fb.none(t, 200*time.Millisecond)
	if st := srv.Stats(); st.Decoys != 2 || st.Fallbacks != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDecoyTokenFromFallback: the built-in answers name the server as the fallback site's own
// Server header does.
func TestDecoyTokenFromFallback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "Apache/2.4.62 (Debian)")
	})}
	go hs.Serve(ln)
	defer hs.Close()
	srv := startServer(t, func(o *Options) { o.Fallback = ln.Addr().String(); o.ServerToken = "" })
	for deadline := time.Now().Add(5 * time.Second); srv.serverToken() != "Apache/2.4.62 (Debian)"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("token %q", srv.serverToken())
		}
	}
	c, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	got, _ := io.ReadAll(c)
	if !bytes.Contains(got, []byte("\r\nServer: Apache/2.4.62 (Debian)\r\n")) || !bytes.Contains(got, []byte("<hr><center>Apache/2.4.62 (Debian)</center>")) {
		t.Fatalf("answer %q", got)
	}
}

// TestTLSSiteGetsRefusedHandshakes: with tls_site, a ClientHello the server refuses (TLS 1.0 only)
// goes to that site raw and unanswered by us: the site records the whole hello and the client gets
// the site's answer, not our alert. A good handshake on the same server still works.
func TestTLSSiteGetsRefusedHandshakes(t *testing.T) {
	site := startFallback(t)
	srv := startServer(t, func(o *Options) { o.TLSSite = site.addr })
	raw, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	old := tls.Client(&recordWrites{Conn: raw}, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10})
	herr := old.Handshake()
	if herr == nil {
		t.Fatal("a TLS 1.0 handshake succeeded")
	}
	rec := old.NetConn().(*recordWrites)
	hello := rec.sent.Bytes()
	rest, _ := io.ReadAll(raw)
	got := append(rec.got.Bytes(), rest...)
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 400 Bad Request")) {
		t.Fatalf("client got %q (handshake error %v), want the site's answer", got, herr)
	}
	if rec := site.next(t); !bytes.Equal(rec.got, hello) {
		t.Fatalf("site recorded %d bytes, the client sent a %d-byte hello", len(rec.got), len(hello))
	}
	dialTLS(t, srv.addr) // a handshake we accept is ours
	if st := srv.Stats(); st.TLSSite != 1 {
		t.Fatalf("stats %+v", st)
	}
}

type recordWrites struct {
	net.Conn
	sent, got bytes.Buffer
}

func (r *recordWrites) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.got.Write(b[:n])
	return n, err
}

func (r *recordWrites) Write(b []byte) (int, error) {
	r.sent.Write(b)
	return r.Conn.Write(b)
}
