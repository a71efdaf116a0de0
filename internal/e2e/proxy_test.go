package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// pair is a fastrojan server and client started from trojan-gfw style config files.
type pair struct {
	socks      string // client's SOCKS5 address
	serverAddr string
	server     *proc
	client     *proc
	cert       string
}

func serverConfig(port int, fallback string, password, cert, key string) map[string]any {
	host, fport, _ := net.SplitHostPort(fallback)
	var fp int
	fmt.Sscan(fport, &fp)
	return map[string]any{
		"run_type":    "server",
		"local_addr":  "127.0.0.1",
		"local_port":  port,
		"remote_addr": host,
		"remote_port": fp,
		"password":    []string{"another-user", password},
		"log_level":   1,
		"ssl":         map[string]any{"cert": cert, "key": key, "alpn": []string{"http/1.1"}},
	}
}

func clientConfig(socksPort, serverPort int, password, cert string) map[string]any {
	return map[string]any{
		"run_type":    "client",
		"local_addr":  "127.0.0.1",
		"local_port":  socksPort,
		"remote_addr": "127.0.0.1",
		"remote_port": serverPort,
		"password":    []string{password},
		"log_level":   1,
		"ssl":         map[string]any{"cert": cert, "sni": "localhost", "alpn": []string{"http/1.1"}},
	}
}

// startPair runs our server and our client, both from config files, with a fallback web server.
func startPair(t testing.TB) *pair {
	t.Helper()
	return startPairWith(t, nil, nil)
}

// startPairWith is startPair with the server's and the client's configs changed by server and
// client (where set) before they start.
func startPairWith(t testing.TB, server, client func(map[string]any)) *pair {
	t.Helper()
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	fallback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "fallback site")
	}))
	t.Cleanup(fallback.Close)
	sport, cport := freePort(t), freePort(t)
	p := &pair{
		socks:      fmt.Sprintf("127.0.0.1:%d", cport),
		serverAddr: fmt.Sprintf("127.0.0.1:%d", sport),
		cert:       cert,
	}
	sm := serverConfig(sport, fallback.Listener.Addr().String(), "s3cret", cert, key)
	if server != nil {
		server(sm)
	}
	scfg := writeJSON(t, dir, "server.json", sm)
	cm := clientConfig(cport, sport, "s3cret", cert)
	if client != nil {
		client(cm)
	}
	ccfg := writeJSON(t, dir, "client.json", cm)
	p.server = start(t, binary, "-c", scfg)
	waitListening(t, p.server, p.serverAddr)
	p.client = start(t, binary, "-c", ccfg)
	waitListening(t, p.client, p.socks)
	return p
}

func TestHTTPThroughProxyIPv4IPv6Domain(t *testing.T) {
	p := startPair(t)
	origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	})
	v4 := httptest.NewServer(origin)
	defer v4.Close()
	_, port, _ := net.SplitHostPort(v4.Listener.Addr().String())

	dests := map[string]string{
		"ipv4":   v4.Listener.Addr().String(),
		"domain": net.JoinHostPort("localhost", port),
	}
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		v6 := httptest.NewUnstartedServer(origin)
		v6.Listener.Close()
		v6.Listener = ln
		v6.Start()
		defer v6.Close()
		dests["ipv6"] = ln.Addr().String()
	} else {
		t.Logf("no IPv6 loopback here (%v): the IPv6 case is not run", err)
	}
	for name, dest := range dests {
		t.Run(name, func(t *testing.T) {
			conn := socksDial(t, p.socks, dest)
			status, body, err := httpGetVia(conn, "origin", "/"+name)
			if err != nil {
				t.Fatal(err)
			}
			if status != "HTTP/1.1 200 OK" || string(body) != "hello from /"+name {
				t.Fatalf("got %q %q, want 200 and the origin's page", status, body)
			}
		})
	}
}

// TestLargeTransferBothWays sends 64 MiB through the tunnel to an echo origin while reading the echo,
// then half-closes: the echo must come back byte-exact and end with EOF.
func TestLargeTransferBothWays(t *testing.T) {
	p := startPair(t)
	origin := startEchoOrigin(t, "tcp", "127.0.0.1:0")
	conn := socksDial(t, p.socks, origin)
	_ = conn.SetDeadline(time.Now().Add(2 * time.Minute))

	const size = 64 << 20
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 256<<10)
		for left := size; left > 0; left -= len(buf) {
			b := buf[:min(len(buf), left)]
			_, _ = rng.Read(b)
			sent.Write(b)
			if _, err := conn.Write(b); err != nil {
				errc <- err
				return
			}
		}
		errc <- conn.CloseWrite() // half-close: the origin sees EOF and closes after echoing
	}()
	got := sha256.New()
	n, err := io.Copy(got, conn)
	if err != nil {
		t.Fatalf("reading echo after %d bytes: %v", n, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("sending: %v", err)
	}
	if n != size {
		t.Fatalf("echo returned %d bytes, want %d", n, size)
	}
	if !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		t.Fatal("echo differs from what was sent")
	}
}

// TestHalfCloseBothWays: the app closes its sending side and still receives the origin's answer;
// then the origin closes and the app sees EOF.
func TestHalfCloseBothWays(t *testing.T) {
	p := startPair(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	originErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			originErr <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		req, err := io.ReadAll(c) // until the app's FIN arrives through the tunnel
		if err != nil {
			originErr <- fmt.Errorf("origin read: %w", err)
			return
		}
		time.Sleep(200 * time.Millisecond) // the answer comes after the EOF, not with it
		_, err = fmt.Fprintf(c, "got %d bytes: %s", len(req), strings.ToUpper(string(req)))
		originErr <- err
	}()
	conn := socksDial(t, p.socks, ln.Addr().String())
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, "question"); err != nil {
		t.Fatal(err)
	}
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading the answer after half-close: %v", err)
	}
	if err := <-originErr; err != nil {
		t.Fatal(err)
	}
	if string(answer) != "got 8 bytes: QUESTION" {
		t.Fatalf("answer %q", answer)
	}
}

// TestProberSeesFallback: a TLS client without the password gets the fallback site's page.
func TestProberSeesFallback(t *testing.T) {
	p := startPair(t)
	conn := tlsDial(t, p.serverAddr)
	status, body, err := httpGetVia(conn, "localhost", "/")
	if err != nil {
		t.Fatal(err)
	}
	if status != "HTTP/1.1 200 OK" || string(body) != "fallback site" {
		t.Fatalf("prober got %q %q, want the fallback site", status, body)
	}
}

// TestGracefulShutdown: SIGTERM lets an open tunnel finish its transfer, then the server exits 0.
func TestGracefulShutdown(t *testing.T) {
	p := startPair(t)
	origin := startEchoOrigin(t, "tcp", "127.0.0.1:0")
	conn := socksDial(t, p.socks, origin)
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, "before"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.server.stop(15 * time.Second) }()
	time.Sleep(300 * time.Millisecond)
	// The tunnel still works while the server drains.
	if _, err := io.WriteString(conn, "during"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "during" {
		t.Fatalf("tunnel during drain: %q %v", buf, err)
	}
	if _, err := net.DialTimeout("tcp", p.serverAddr, time.Second); err == nil {
		t.Error("server still accepts new connections while draining")
	}
	conn.CloseWrite()
	_, _ = io.Copy(io.Discard, conn)
	if err := <-exited; err != nil {
		t.Fatalf("server exit after drain: %v\n%s", err, p.server.Output())
	}
}
