package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// fakeServer is a TLS listener that hands each connection's first Read (one TLS record's plaintext)
// to the test and then echoes.
type fakeServer struct {
	addr   string
	first  chan []byte
	client *tls.Config
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{addr: ln.Addr().String(), first: make(chan []byte, 4), client: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 32<<10)
				n, err := c.Read(buf) // crypto/tls returns at most one record per Read
				if err != nil {
					return
				}
				s.first <- append([]byte(nil), buf[:n]...)
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return s
}

func startClient(t *testing.T, s *fakeServer, hash trojan.Hash) string {
	t.Helper()
	_, addr := serveClient(t, Options{Outbound: &outbound.Trojan{Server: s.addr, TLS: s.client, Hash: hash}})
	return addr
}

// serveClient runs a client with opts on a loopback listener and shuts it down at cleanup, checking
// that both the shutdown and Serve end cleanly.
func serveClient(t testing.TB, opts Options) (*Client, string) {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return c, ln.Addr().String()
}

func socksConnect(t *testing.T, proxy string, dest trojan.Addr) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := dest.AppendTo([]byte{5, 1, 0, 5, 1, 0})
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 12)
	if _, err := io.ReadFull(c, reply); err != nil || reply[1] != 0 || reply[3] != 0 {
		t.Fatalf("socks5 reply %x %v", reply, err)
	}
	return c
}

// TestHeaderAndFirstPayloadInOneRecord: the app's first bytes ride in the same TLS record as the
// Trojan header, so the server can act on the request without another round trip.
func TestHeaderAndFirstPayloadInOneRecord(t *testing.T) {
	s := newFakeServer(t)
	hash := trojan.HashPassword("pw")
	proxy := startClient(t, s, hash)
	dest := trojan.Addr{Domain: "example.com", Port: 443}
	app := socksConnect(t, proxy, dest)
	payload := []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
	if _, err := app.Write(payload); err != nil {
		t.Fatal(err)
	}
	want, _ := trojan.AppendRequest(nil, trojan.Request{Hash: hash, Cmd: trojan.CmdConnect, Dest: dest})
	want = append(want, payload...)
	select {
	case got := <-s.first:
		if !bytes.Equal(got, want) {
			t.Fatalf("first record\n got %q\nwant %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no request reached the server")
	}
	// And the tunnel carries data both ways after that.
	if _, err := app.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	echo := make([]byte, 4)
	if _, err := io.ReadFull(app, echo); err != nil || string(echo) != "ping" {
		t.Fatalf("echo %q %v", echo, err)
	}
}

// TestServerSpeaksFirst: an app that waits for the server (SMTP, SSH) still gets its tunnel: the
// header goes alone after the bounded wait.
func TestServerSpeaksFirst(t *testing.T) {
	s := newFakeServer(t)
	hash := trojan.HashPassword("pw")
	proxy := startClient(t, s, hash)
	dest := trojan.Addr{Domain: "mail.example.com", Port: 25}
	start := time.Now()
	socksConnect(t, proxy, dest)
	want, _ := trojan.AppendRequest(nil, trojan.Request{Hash: hash, Cmd: trojan.CmdConnect, Dest: dest})
	select {
	case got := <-s.first:
		if !bytes.Equal(got, want) {
			t.Fatalf("header alone: got %q want %q", got, want)
		}
		if waited := time.Since(start); waited > 3*time.Second {
			t.Fatalf("header sent only after %s", waited)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no request reached the server when the app stays silent")
	}
}

// startServing runs a client of s on loopback; the test stops it and reads Serve's result.
func startServing(t *testing.T, s *fakeServer) (*Client, net.Listener, <-chan error) {
	t.Helper()
	c, err := New(Options{Outbound: &outbound.Trojan{Server: s.addr, TLS: s.client, Hash: trojan.HashPassword("pw")}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- c.Serve(ln) }()
	return c, ln, served
}

// TestShutdownDoesNotWaitForSilentApps: an application that connected but never finished SOCKS5
// does not hold up a shutdown; an open tunnel does, until it ends.
func TestShutdownDoesNotWaitForSilentApps(t *testing.T) {
	s := newFakeServer(t)
	c, ln, served := startServing(t, s)
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	tunnel := socksConnect(t, ln.Addr().String(), trojan.Addr{Domain: "example.com", Port: 80})
	if _, err := tunnel.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	<-s.first
	for c.Stats().Active != 2 {
		time.Sleep(time.Millisecond)
	}

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- c.Shutdown(ctx)
	}()
	_ = silent.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("silent app: read %v, want EOF from the shutdown", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("shutdown returned (%v) while a tunnel was open", err)
	case <-time.After(200 * time.Millisecond):
	}
	tunnel.Close()
	select {
	case err := <-shut:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not return after the last tunnel closed")
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// TestCloseWaitsForItsGoroutines: when Close returns, no goroutine of the client is left, an open
// tunnel's relay included.
func TestCloseWaitsForItsGoroutines(t *testing.T) {
	s := newFakeServer(t)
	c, ln, served := startServing(t, s)
	tunnel := socksConnect(t, ln.Addr().String(), trojan.Addr{Domain: "example.com", Port: 80})
	defer tunnel.Close()
	if _, err := tunnel.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	<-s.first
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, frame := range []string{"fastrojan/internal/client.(*Client).handle", "fastrojan/internal/relay."} {
		if strings.Contains(stacks, frame) {
			t.Errorf("a goroutine in %s is still running after Close returned:\n%s", frame, stacks)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
