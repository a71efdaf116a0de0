package client

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/pool"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// A stream that takes a spare the server drops just as the request arrives (read, then reset, as a
// server that gave up on the connection) is sent again on a fresh connection, first payload
// included: the application gets its answer and never sees the failure.
func TestStreamOnDeadSpareIsRetried(t *testing.T) {
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := tls.X509KeyPair(certPEM, keyPEM)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	requests := make(chan []byte, 8)
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
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				idleFrom := time.Now()
				buf := make([]byte, 32<<10)
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if time.Since(idleFrom) > 200*time.Millisecond { // a spare: drop it, request unanswered
					c.(*tls.Conn).NetConn().(*net.TCPConn).SetLinger(0)
					return
				}
				requests <- append([]byte(nil), buf[:n]...)
				if _, hdr, err := trojan.ParseRequest(buf[:n]); err == nil {
					_, _ = c.Write(buf[hdr:n]) // echo the first payload, then the rest
				}
				_, _ = io.Copy(c, c)
			}()
		}
	}()

	hash := trojan.HashPassword("pw")
	ob := &outbound.Trojan{Server: ln.Addr().String(), TLS: &tls.Config{RootCAs: roots, ServerName: "localhost"}, Hash: hash}
	p := pool.New(ob.Open, pool.Options{Spares: 1, Linger: 10 * time.Second, MaxAge: 5 * time.Second})
	_, proxy := serveClient(t, Options{Outbound: ob, Pool: p})
	dest := trojan.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 80}

	talk := func(msg string) {
		t.Helper()
		c := socksConnect(t, proxy, dest)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo %q, %v; want %q", got, err, msg)
		}
		c.Close()
		select {
		case req := <-requests:
			want, _ := trojan.AppendRequest(nil, trojan.Request{Hash: hash, Cmd: trojan.CmdConnect, Dest: dest})
			if string(req) != string(want)+msg {
				t.Fatalf("server got %q, want the header and %q in one record", req, msg)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no request reached the server")
		}
	}
	talk("first")                      // its own connection, or the spare its arrival opened (on loopback that may be ready first)
	time.Sleep(400 * time.Millisecond) // the spare opened after it idles: the server will drop it
	talk("second")                     // takes the spare, is dropped, is sent again
	st := p.Stats()
	// Only a stream that rode a spare is ever sent again: Retried 1 is the second stream's retry.
	if st.Retried != 1 || st.Hits+st.Joined < 1 {
		t.Fatalf("pool stats %+v: want the second stream on the spare and retried once", st)
	}
}
