package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xtaci/smux"

	"github.com/fastrojan/fastrojan/internal/mux"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// trojanGoServer is trojan-go's server side built in the test from smux: it reads the Trojan
// request, wants CMD 0x7f to "MUX_CONN", runs an smux server session (default config, as trojan-go)
// and answers every stream, after its SimpleSocks header, with "dest|" and then an echo.
type trojanGoServer struct {
	addr     string
	client   *tls.Config
	sessions atomic.Int64
	streams  atomic.Int64
	badReq   atomic.Int64
}

func startTrojanGoServer(t *testing.T, hash trojan.Hash) *trojanGoServer {
	t.Helper()
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
	s := &trojanGoServer{addr: ln.Addr().String(), client: &tls.Config{RootCAs: roots, ServerName: "localhost"}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				var req trojan.Request
				for need := 60; ; need++ {
					b, err := br.Peek(need)
					if err != nil {
						return
					}
					r, n, perr := trojan.ParseRequest(b)
					if perr == nil {
						req = r
						br.Discard(n)
						break
					}
					if !errors.Is(perr, trojan.ErrShort) {
						s.badReq.Add(1)
						return
					}
				}
				if req.Hash != hash || req.Cmd != 0x7f || req.Dest.Domain != "MUX_CONN" {
					s.badReq.Add(1)
					return
				}
				s.sessions.Add(1)
				sess, err := smux.Server(struct {
					io.Reader
					io.WriteCloser
				}{br, c}, smux.DefaultConfig())
				if err != nil {
					return
				}
				defer sess.Close()
				for {
					st, err := sess.AcceptStream()
					if err != nil {
						return
					}
					s.streams.Add(1)
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer st.Close()
						cmd, dest, err := mux.ReadHeader(st)
						if err != nil || cmd != trojan.CmdConnect {
							return
						}
						st.Write([]byte(dest.String() + "|"))
						io.Copy(st, st)
					}()
				}
			}()
		}
	}()
	return s
}

// Our client's mux against trojan-go's server side: sequential streams share one session, more
// than Concurrency at once open a second, and each stream carries its own destination and bytes.
func TestMuxClientAgainstTrojanGoServer(t *testing.T) {
	hash := trojan.HashPassword("mux-pw")
	srv := startTrojanGoServer(t, hash)
	ob := &outbound.Trojan{Server: srv.addr, TLS: srv.client, Hash: hash}
	mc := mux.NewClient(func(ctx context.Context) (net.Conn, error) {
		c, err := ob.Handshake(ctx)
		if err != nil {
			return nil, err
		}
		return c, nil
	}, hash, mux.ClientOptions{Concurrency: 2, IdleTimeout: time.Minute})
	_, proxy := serveClient(t, Options{Outbound: ob, Mux: mc})

	talk := func(port uint16, msg string) net.Conn {
		dest := trojan.Addr{IP: netip.MustParseAddr("192.0.2.7"), Port: port}
		c := socksConnect(t, proxy, dest)
		c.Write([]byte(msg))
		want := dest.String() + "|" + msg
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
		return c
	}
	for i := range 3 {
		c := talk(uint16(1000+i), "seq")
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	if n := srv.sessions.Load(); n != 1 {
		t.Fatalf("%d sessions for sequential streams, want 1", n)
	}
	a, b, c := talk(2001, "a"), talk(2002, "b"), talk(2003, "c")
	defer a.Close()
	defer b.Close()
	defer c.Close()
	if n := srv.sessions.Load(); n != 2 {
		t.Fatalf("%d sessions with 3 streams open and concurrency 2, want 2", n)
	}
	if srv.badReq.Load() != 0 || srv.streams.Load() != 6 {
		t.Fatalf("server saw %d bad requests, %d streams", srv.badReq.Load(), srv.streams.Load())
	}
	if st := mc.Stats(); st.Sessions != 2 || st.Streams != 6 {
		t.Fatalf("client stats %+v", st)
	}
}
