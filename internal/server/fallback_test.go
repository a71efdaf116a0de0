package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// compareProbe sends input to the fallback directly and through the server (over TLS, or raw TCP
// when plain), and checks the prober gets the same bytes both ways and the fallback records exactly
// input both times.
func compareProbe(t *testing.T, srv *testServer, fb *fallbackSite, input []byte, plain bool) {
	t.Helper()
	direct := probeDirect(t, fb.addr, input)
	if rec := fb.next(t); !bytes.Equal(rec.got, input) {
		t.Fatalf("direct: fallback recorded %d bytes, prober sent %d", len(rec.got), len(input))
	}
	var via probeResult
	if plain {
		via = probeDirect(t, srv.addr, input)
	} else {
		via = probeTLS(t, srv.addr, input)
	}
	rec := fb.next(t)
	if !bytes.Equal(rec.got, input) {
		t.Fatalf("via server: fallback recorded %d bytes %q..., prober sent %d bytes %q...",
			len(rec.got), head(rec.got), len(input), head(input))
	}
	if direct.err != nil || via.err != nil {
		t.Fatalf("read errors: direct %v, via server %v", direct.err, via.err)
	}
	if !bytes.Equal(direct.resp, via.resp) {
		t.Fatalf("response via server differs from the fallback's own:\nvia:    %q\ndirect: %q", via.resp, direct.resp)
	}
}

func head(b []byte) []byte { return b[:min(len(b), 40)] }

func TestFallbackByteExact(t *testing.T) {
	fb := startFallback(t)
	srv := startServer(t, func(o *Options) { o.Fallback = fb.addr })
	httpGet := []byte("GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: probe\r\n\r\n")

	t.Run("wrong password", func(t *testing.T) {
		in := append(header(t, "not the password", trojan.CmdConnect, "93.184.216.34:80"), httpGet...)
		compareProbe(t, srv, fb, in, false)
	})
	t.Run("wrong password, header only", func(t *testing.T) {
		compareProbe(t, srv, fb, header(t, "not the password", trojan.CmdConnect, "example.com:443"), false)
	})
	t.Run("known hash, malformed command", func(t *testing.T) {
		in := header(t, testPassword, trojan.CmdConnect, "127.0.0.1:80")
		in[trojan.HashLen+2] = 0x7e
		compareProbe(t, srv, fb, in, false)
	})
	t.Run("bare HTTP GET over TLS", func(t *testing.T) {
		compareProbe(t, srv, fb, httpGet, false)
	})
	t.Run("HTTP GET of a missing page over TLS", func(t *testing.T) {
		compareProbe(t, srv, fb, []byte("GET /admin HTTP/1.0\r\n\r\n"), false)
	})

	rng := rand.New(rand.NewPCG(2, 7)) // seeded: a failure reproduces
	lengths := []int{0, 1, 2, 55, 56, 57, 58, 59, 64, 100, 320, 1000, 4095, 4096}
	for range 16 {
		lengths = append(lengths, rng.IntN(4097))
	}
	for _, n := range lengths {
		t.Run(fmt.Sprintf("random %d bytes", n), func(t *testing.T) {
			in := make([]byte, n)
			for i := range in {
				in[i] = byte(rng.Uint32())
			}
			compareProbe(t, srv, fb, in, false)
		})
	}
	// Random bytes that start like a hash keep the server waiting for more until the prober ends.
	t.Run("hex prefix then EOF", func(t *testing.T) {
		compareProbe(t, srv, fb, []byte("0123456789abcdef0123"), false)
	})
	if st := srv.Stats(); st.Authenticated != 0 {
		t.Fatalf("stats %+v: nothing here may authenticate", st)
	}
}

// TestFallbackStalledHeader: a header cut short and then left alone goes to the fallback when the
// request deadline passes, with the bytes sent so far, while the prober still holds its side open.
func TestFallbackStalledHeader(t *testing.T) {
	const reqTimeout = 300 * time.Millisecond
	fb := startFallback(t)
	srv := startServer(t, func(o *Options) { o.Fallback = fb.addr; o.RequestTimeout = reqTimeout })
	full := header(t, testPassword, trojan.CmdConnect, "127.0.0.1:80")
	for _, tc := range []struct {
		name  string
		input []byte
	}{
		{"30 bytes of a known hash", full[:30]},
		{"known hash and CRLF", full[:trojan.HashLen+2]},
		{"all but the last byte", full[:len(full)-1]},
		{"known hash up to a domain ATYP", append(full[:trojan.HashLen+3:trojan.HashLen+3], 0x03)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			direct := probeDirect(t, fb.addr, tc.input)
			if rec := fb.next(t); !bytes.Equal(rec.got, tc.input) {
				t.Fatalf("direct recording %q", rec.got)
			}
			for len(fb.opened) > 0 {
				<-fb.opened
			}
			c, raw := dialTLS(t, srv.addr)
			start := time.Now()
			if _, err := c.Write(tc.input); err != nil {
				t.Fatal(err)
			}
			select {
			case <-fb.opened:
			case <-time.After(5 * time.Second):
				t.Fatal("stalled header never reached the fallback")
			}
			if el := time.Since(start); el < reqTimeout-50*time.Millisecond {
				t.Fatalf("handed to the fallback after %v, before the %v request timeout", el, reqTimeout)
			}
			c.CloseWrite()
			resp, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if rec := fb.next(t); !bytes.Equal(rec.got, tc.input) {
				t.Fatalf("fallback recorded %q, prober sent %q", rec.got, tc.input)
			}
			if !bytes.Equal(resp, direct.resp) {
				t.Fatalf("via server %q, direct %q", resp, direct.resp)
			}
			if _, err := raw.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Fatalf("TCP after close_notify: %v, want EOF", err)
			}
		})
	}
}

// TestFallbackClosesCleanly: when the site ends the connection, the prober gets the whole answer,
// then close_notify and a FIN (no RST), and the server lets go of the connection. (Plain TCP goes
// to tls_site, which ends the same way: TestTLSSiteRelay.)
func TestFallbackClosesCleanly(t *testing.T) {
	fb := startFallback(t)
	srv := startServer(t, func(o *Options) { o.Fallback = fb.addr; o.TLSSite = fb.addr })
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprint("plain=", plain), func(t *testing.T) {
			var r io.Reader
			var raw *net.TCPConn
			if plain {
				c, err := net.Dial("tcp", srv.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				raw = c.(*net.TCPConn)
				r = raw
				raw.Write(req)
			} else {
				tc, rc := dialTLS(t, srv.addr)
				raw, r = rc, tc
				tc.Write(req) // no half-close: the site ends this one
			}
			raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("read: %v (want a clean end)", err)
			}
			if !bytes.HasPrefix(resp, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.HasSuffix(resp, []byte(siteBody)) {
				t.Fatalf("response %q", resp)
			}
			if !plain {
				if _, err := raw.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
					t.Fatalf("TCP after close_notify: %v, want EOF", err)
				}
			}
			// The server still reads our side; closing it ends the connection at the server too.
			raw.Close()
			waitIdle(t, srv)
			fb.next(t)
		})
	}
}

// TestPlainHTTPResponse: with plain_http_response set, a non-TLS client gets exactly that and a
// clean end, and the fallback sees nothing.
func TestPlainHTTPResponse(t *testing.T) {
	fb := startFallback(t)
	resp := []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	srv := startServer(t, func(o *Options) { o.Fallback = fb.addr; o.PlainHTTPResponse = resp })
	for _, halfClose := range []bool{true, false} {
		c, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		if halfClose {
			c.(*net.TCPConn).CloseWrite()
		}
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("read: %v, want a clean EOF", err)
		}
		if !bytes.Equal(got, resp) {
			t.Fatalf("got %q, want %q", got, resp)
		}
	}
	// TLS clients still get the fallback.
	probeTLS(t, srv.addr, []byte("GET / HTTP/1.0\r\n\r\n"))
	fb.next(t)
	if st := srv.Stats(); st.PlainHTTP != 2 || st.Fallbacks != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestFallbackUnreachable: with the fallback down, a prober's connection is closed, not held.
func TestFallbackUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := ln.Addr().String()
	ln.Close()
	srv := startServer(t, func(o *Options) { o.Fallback = down })
	c, _ := dialTLS(t, srv.addr)
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if len(got) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("got %q, %v; want the connection closed", got, err)
	}
	waitIdle(t, srv)
}
