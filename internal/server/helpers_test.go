package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
)

const testPassword = "correct horse battery staple"

var (
	certOnce sync.Once
	testCert tls.Certificate
)

// selfSigned returns a certificate for localhost, 127.0.0.1 and ::1, made once per test binary.
func selfSigned(t testing.TB) tls.Certificate {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "localhost"},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return testCert
}

// testServer is a running Server on a loopback port.
type testServer struct {
	*Server
	addr  string
	serve chan error
}

// startServer starts a server with testPassword as its only user. mod may change the options.
func startServer(t testing.TB, mod func(*Options)) *testServer {
	t.Helper()
	opts := Options{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}},
		Users:     users.NewStatic([]string{testPassword}),
		Logger:    slog.New(slog.DiscardHandler),
		// A fixed token: no background "HEAD /" to the fallback, whose recordings tests read. Tests of
		// the token learner set it back to "".
		ServerToken: "nginx",
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, addr: ln.Addr().String(), serve: make(chan error, 1)}
	go func() { ts.serve <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-ts.serve; err != nil {
			t.Errorf("Serve returned %v after Close, want nil", err)
		}
	})
	return ts
}

// clientTLS is what the probing and tunnelling clients in these tests use.
var clientTLS = &tls.Config{
	InsecureSkipVerify: true,
	ServerName:         "localhost",
	CurvePreferences:   []tls.CurveID{tls.X25519}, // cheap handshakes: thousands run in the leak test
}

// dialTLS opens a TLS connection to addr and also returns the TCP connection under it.
func dialTLS(t testing.TB, addr string) (*tls.Conn, *net.TCPConn) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, clientTLS)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	return tc, raw.(*net.TCPConn)
}

// header is a request header for dest with the given password.
func header(t testing.TB, password string, cmd trojan.Command, dest string) []byte {
	t.Helper()
	a, err := trojan.ParseAddrString(dest)
	if err != nil {
		t.Fatal(err)
	}
	b, err := trojan.AppendRequest(nil, trojan.Request{Hash: trojan.HashPassword(password), Cmd: cmd, Dest: a})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// listenTarget runs handle for every connection to a loopback listener on network/addr.
func listenTarget(t testing.TB, network, addr string, handle func(*net.TCPConn)) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return ln
}

// answerAfterEOF reads everything, then answers "echo:"+data and closes.
func answerAfterEOF(c *net.TCPConn) {
	b, err := io.ReadAll(c)
	if err != nil {
		return
	}
	c.Write(append([]byte("echo:"), b...))
}

// recording is what the fallback recorder saw on one connection.
type recording struct {
	remote string
	got    []byte
}

// fallbackSite is a real net/http server behind a listener that records exactly the bytes each
// connection delivered. A connection's recording is complete once the client side sent EOF: the
// recorder drains whatever the HTTP server left unread before it really closes.
type fallbackSite struct {
	addr     string
	opened   chan string    // remote address, on accept
	recorded chan recording // on close
}

const siteBody = "<html><body>just a web site</body></html>\n"

func startFallback(t testing.TB) *fallbackSite {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fallbackSite{addr: ln.Addr().String(), opened: make(chan string, 1024), recorded: make(chan recording, 1024)}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil // byte-identical answers across a second boundary
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, siteBody)
	})
	hs := &http.Server{Handler: mux, ErrorLog: nil}
	hs.SetKeepAlivesEnabled(true)
	go hs.Serve(&recordingListener{Listener: ln, fs: fs})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		hs.Close()
	})
	return fs
}

// next returns the next completed recording.
func (fs *fallbackSite) next(t testing.TB) recording {
	t.Helper()
	select {
	case r := <-fs.recorded:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the fallback recorded no connection")
	}
	panic("unreachable")
}

// none asserts that no connection reached the fallback for a moment.
func (fs *fallbackSite) none(t testing.TB, within time.Duration) {
	t.Helper()
	select {
	case r := <-fs.opened:
		t.Fatalf("the fallback got a connection from %s", r)
	case <-time.After(within):
	}
}

type recordingListener struct {
	net.Listener
	fs *fallbackSite
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.fs.opened <- c.RemoteAddr().String():
	default:
	}
	return &recordingConn{Conn: c, fs: l.fs}, nil
}

type recordingConn struct {
	net.Conn
	fs   *fallbackSite
	mu   sync.Mutex
	got  bytes.Buffer
	once sync.Once
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.got.Write(b[:n])
	c.mu.Unlock()
	return n, err
}

func (c *recordingConn) Close() error {
	c.once.Do(func() {
		// Send FIN, then drain what the server did not read, so the recording is complete and the
		// close does not reset. Bounded: a client that never ends its side is cut after a while.
		c.CloseWrite()
		c.Conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		io.Copy(io.Discard, readerFunc(c.Read))
		c.mu.Lock()
		got := bytes.Clone(c.got.Bytes())
		c.mu.Unlock()
		select { // a test that does not read recordings (the leak test) must not block the site
		case c.fs.recorded <- recording{remote: c.RemoteAddr().String(), got: got}:
		default:
		}
	})
	return c.Conn.Close()
}

func (c *recordingConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

// probeResult is what a prober saw.
type probeResult struct {
	resp []byte
	err  error // error of the read that ended the response (nil for a clean EOF)
}

// probeDirect sends input straight to addr over plain TCP, half-closes, and reads the answer.
func probeDirect(t testing.TB, addr string, input []byte) probeResult {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(input); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	resp, err := io.ReadAll(c)
	return probeResult{resp, err}
}

// probeTLS does the same over TLS to the server, then checks the TCP connection underneath ends
// with a FIN after close_notify.
func probeTLS(t testing.TB, addr string, input []byte) probeResult {
	t.Helper()
	tc, raw := dialTLS(t, addr)
	if len(input) > 0 {
		if _, err := tc.Write(input); err != nil {
			t.Fatal(err)
		}
	}
	tc.CloseWrite()
	resp, err := io.ReadAll(tc)
	if err == nil {
		if _, rerr := raw.Read(make([]byte, 1)); !errors.Is(rerr, io.EOF) {
			t.Errorf("after close_notify the TCP connection gave %v, want EOF (a FIN)", rerr)
		}
	}
	return probeResult{resp, err}
}

func testStore() *users.Static { return users.NewStatic([]string{testPassword}) }
