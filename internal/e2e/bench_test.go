package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/client"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/server"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
)

// startSink accepts connections and reads each to EOF, then writes how many bytes it read
// as the only reply, so the writer knows everything arrived.
func startSink(tb testing.TB) string {
	tb.Helper()
	return serveTCP(tb, "tcp", "127.0.0.1:0", func(_ context.Context, c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		_, _ = c.Write([]byte{byte(n), byte(n >> 8)})
	})
}

// inProcessProxy runs server and client in this process and returns the SOCKS5 address.
func inProcessProxy(tb testing.TB) string {
	tb.Helper()
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"localhost"})
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	srv, err := server.New(server.Options{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Users:     users.NewStatic([]string{"bench"}),
		Fallback:  "127.0.0.1:9",
	})
	if err != nil {
		tb.Fatal(err)
	}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	cl, err := client.New(client.Options{Outbound: &outbound.Trojan{
		Server: sln.Addr().String(),
		TLS:    &tls.Config{RootCAs: pool, ServerName: "localhost"},
		Hash:   trojan.HashPassword("bench"),
	}})
	if err != nil {
		tb.Fatal(err)
	}
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(sln)
	go cl.Serve(cln)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = cl.Shutdown(ctx)
		_ = srv.Shutdown(ctx)
	})
	return cln.Addr().String()
}

// bulk writes size bytes over conn, half-closes, and waits for the sink's acknowledgement.
func bulk(b *testing.B, conn *net.TCPConn, size int) {
	buf := make([]byte, 128<<10)
	for left := size; left > 0; left -= len(buf) {
		if _, err := conn.Write(buf[:min(len(buf), left)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := conn.CloseWrite(); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadAll(conn); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBulkTransfer compares one bulk transfer through client and server with a direct loopback
// copy in the same run; compare the two MB/s figures, not absolute numbers across machines.
func BenchmarkBulkTransfer(b *testing.B) {
	const size = 64 << 20
	sink := startSink(b)
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			c, err := net.Dial("tcp", sink)
			if err != nil {
				b.Fatal(err)
			}
			bulk(b, c.(*net.TCPConn), size)
			c.Close()
		}
	})
	b.Run("fastrojan", func(b *testing.B) {
		socks := inProcessProxy(b)
		b.SetBytes(size)
		for b.Loop() {
			c, err := socksDialErr(socks, sink)
			if err != nil {
				b.Fatal(err)
			}
			bulk(b, c, size)
			c.Close()
		}
	})
}
