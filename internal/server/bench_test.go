package server

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// discard reads everything, then reports how much by closing.
func discard(c *net.TCPConn) { io.Copy(io.Discard, c) }

// BenchmarkThroughput compares one bulk upload through the server (TLS in, TCP out) with the same
// upload over a direct loopback TCP connection, in the same run.
func BenchmarkThroughput(b *testing.B) {
	chunk := make([]byte, 64<<10)
	sink := listenTarget(b, "tcp", "127.0.0.1:0", discard)
	run := func(b *testing.B, w io.Writer) {
		b.SetBytes(int64(len(chunk)))
		b.ResetTimer()
		for range b.N {
			if _, err := w.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("direct", func(b *testing.B) {
		c, err := net.Dial("tcp", sink.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		run(b, c)
	})
	b.Run("server", func(b *testing.B) {
		srv := startServer(b, nil)
		tc, _ := dialTLS(b, srv.addr)
		tc.SetDeadline(time.Time{})
		if _, err := tc.Write(header(b, testPassword, trojan.CmdConnect, sink.Addr().String())); err != nil {
			b.Fatal(err)
		}
		run(b, tc)
	})
}
