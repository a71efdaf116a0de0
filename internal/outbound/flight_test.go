package outbound_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// writeLog records the writes made on a connection below TLS.
type writeLog struct {
	net.Conn
	mu     sync.Mutex
	writes []int
}

func (w *writeLog) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, len(b))
	w.mu.Unlock()
	return w.Conn.Write(b)
}

func (w *writeLog) sizes() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.writes...)
}

// tlsEcho is a TLS server on loopback that completes each handshake, reports it, and sends what
// the client wrote first to got.
type tlsEcho struct {
	addr      string
	pool      *x509.CertPool
	handshake chan error
	got       chan []byte
}

func startTLSEcho(t *testing.T, cfg *tls.Config) *tlsEcho {
	t.Helper()
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates = []tls.Certificate{cert}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &tlsEcho{addr: ln.Addr().String(), pool: x509.NewCertPool(), handshake: make(chan error, 4), got: make(chan []byte, 4)}
	e.pool.AppendCertsFromPEM(certPEM)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				err := c.(*tls.Conn).Handshake()
				e.handshake <- err
				if err != nil {
					return
				}
				buf := make([]byte, 4096)
				n, err := c.Read(buf)
				if err != nil && err != io.EOF {
					return
				}
				e.got <- buf[:n]
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return e
}

// The client's last handshake flight (its Finished) and the Trojan request leave in one write, so
// in one segment: one packet less per connection for a lossy path to drop. A HelloRetryRequest and
// TLS 1.2, whose client flights wait for the server's answer, still complete.
func TestRequestRidesWithTheFinished(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name   string
		server func() *tls.Config
		writes int // on the connection below TLS, request included
	}{
		{"TLS 1.3", func() *tls.Config { return &tls.Config{} }, 2},
		{"TLS 1.3 after HelloRetryRequest", func() *tls.Config { return &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP256}} }, 3},
		{"TLS 1.2", func() *tls.Config { return &tls.Config{MaxVersion: tls.VersionTLS12} }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startTLSEcho(t, tc.server())
			var below *writeLog
			ob := &outbound.Trojan{Server: e.addr, Hash: trojan.HashPassword("pw"),
				TLS: &tls.Config{RootCAs: e.pool, ServerName: "localhost", CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}},
				DialPlain: func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
					if err != nil {
						return nil, err
					}
					below = &writeLog{Conn: c}
					return below, nil
				}}
			dest := trojan.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 80}
			conn, err := ob.Connect(context.Background(), dest, []byte("GET /"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			select {
			case got := <-e.got:
				want, _ := trojan.AppendRequest(nil, trojan.Request{Hash: ob.Hash, Cmd: trojan.CmdConnect, Dest: dest})
				if string(got) != string(want)+"GET /" {
					t.Fatalf("server read %q, want the request", got)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the request did not reach the server")
			}
			if w := below.sizes(); len(w) != tc.writes {
				t.Errorf("writes below TLS %v: want %d (the Finished with the request)", w, tc.writes)
			}
		})
	}
}

// Open, the dial of spares and mux sessions, sends the Finished at once: the server's handshake
// completes while the connection waits for its first stream.
func TestOpenCompletesTheServersHandshake(t *testing.T) {
	noLeaks(t)
	e := startTLSEcho(t, &tls.Config{})
	ob := &outbound.Trojan{Server: e.addr, Hash: trojan.HashPassword("pw"), TLS: &tls.Config{RootCAs: e.pool, ServerName: "localhost"}}
	conn, err := ob.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	select {
	case err := <-e.handshake:
		if err != nil {
			t.Fatalf("server handshake: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the server's handshake did not complete while the connection was idle")
	}
}
