package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// closingServer is a Trojan server stricter than Xray's default handshake policy: a connection whose
// complete request has not arrived limit after accept gets close_notify and a FIN, and whatever the
// client still sends after that is counted as having reached a reader that no longer reads Trojan
// (a fallback site, in fastrojan's own server before this change). Valid requests are relayed to
// their destination.
type closingServer struct {
	limit    time.Duration
	served   atomic.Int64 // requests read in time
	cutoff   atomic.Int64 // connections given up on for silence
	leaked   atomic.Int64 // connections that sent bytes after the cutoff
	leakedBy atomic.Int64 // bytes sent after the cutoff
}

func startClosingServer(t *testing.T, p *netlab.Path, addr, cert, key string, limit time.Duration) *closingServer {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := p.Server.Do(func() (err error) { ln, err = tfo.Listen(context.Background(), "tcp", addr, 64, nil); return err }); err != nil {
		t.Fatal(err)
	}
	s := &closingServer{limit: limit}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); s.serve(ctx, p, c, cfg) }()
		}
	}()
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	return s
}

func (s *closingServer) serve(ctx context.Context, p *netlab.Path, raw net.Conn, cfg *tls.Config) {
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	cutoff := time.Now().Add(s.limit)
	_ = raw.SetDeadline(cutoff)
	tc := tls.Server(raw, cfg)
	if err := tc.Handshake(); err != nil {
		return
	}
	buf := make([]byte, 16<<10)
	n := 0
	for {
		m, err := tc.Read(buf[n:])
		n += m
		req, hdr, perr := trojan.ParseRequest(buf[:n])
		if perr == nil {
			s.served.Add(1)
			_ = raw.SetDeadline(time.Time{})
			s.relay(p, tc, req, buf[hdr:n])
			return
		}
		if !errors.Is(perr, trojan.ErrShort) || err != nil {
			var ne net.Error
			if n == 0 && errors.As(err, &ne) && ne.Timeout() {
				s.cutoff.Add(1)
				s.linger(tc, raw)
			}
			return
		}
	}
}

// linger ends a silent connection as a server that gave up on it does (close_notify, FIN), but keeps
// reading for a while to catch a request sent too late.
func (s *closingServer) linger(tc *tls.Conn, raw net.Conn) {
	_ = raw.SetDeadline(time.Now().Add(time.Second))
	_ = tc.CloseWrite()
	_ = raw.(*net.TCPConn).CloseWrite()
	_ = raw.SetReadDeadline(time.Now().Add(3 * time.Second))
	// Application data only: a client closing its spare politely sends a close_notify alert, which
	// ends this read without counting.
	if m, _ := io.Copy(io.Discard, tc); m > 0 {
		s.leaked.Add(1)
		s.leakedBy.Add(m)
	}
}

func (s *closingServer) relay(p *netlab.Path, tc *tls.Conn, req trojan.Request, rest []byte) {
	var up net.Conn
	if err := p.Server.Do(func() (err error) {
		up, err = net.DialTimeout("tcp", req.Dest.String(), 5*time.Second)
		return err
	}); err != nil {
		return
	}
	defer up.Close()
	if _, err := up.Write(rest); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, tc)
		_ = up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(tc, up)
	_ = tc.CloseWrite()
	<-done
}

// Proof that the pool never uses a connection the server may no longer read as Trojan: a server
// that gives up on silent connections after 2 s, and streams at random gaps of 0.5–8 s (two
// independent sequences, so about 28 streams in the minute) through the client's default config.
// Every stream must succeed and no byte may reach the server after it gave up on a connection.
func TestPoolWithServerClosingSilentConnections(t *testing.T) {
	const limit = 2 * time.Second
	duration := time.Minute
	if testing.Short() {
		duration = 20 * time.Second
	}
	var srv *closingServer
	r := newWarmRig(t, 20*time.Millisecond, nil, func(p *netlab.Path, cert, key string) string {
		addr := netip.AddrPortFrom(p.ServerAddr.V4, 443).String()
		srv = startClosingServer(t, p, addr, cert, key, limit)
		return addr
	})
	var failed, ok atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(duration)
	for seq := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(seq)))
			for {
				gap := 500*time.Millisecond + time.Duration(rng.Int64N(int64(7500*time.Millisecond)))
				if time.Now().Add(gap).After(end) {
					return
				}
				time.Sleep(gap)
				if _, err := r.fetch(context.Background()); err != nil {
					failed.Add(1)
					t.Errorf("stream after a %v gap failed: %v", gap.Round(time.Millisecond), err)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	time.Sleep(4 * time.Second) // connections the server gave up on finish lingering
	m := scrapeIn(t, r.p.Client, r.clientMet)
	peerClosed := metric(m, `fastrojan_pool_spares_total{event="peer_closed"}`)
	learned := metric(m, "fastrojan_pool_learned_limit_seconds")
	pooled := r.pooled(t)
	retries := metric(m, "fastrojan_pool_retries_total")
	t.Logf("%d streams ok, %d failed; server: %d requests read, %d silent connections given up on, %d of them sent bytes afterwards (%d bytes); client: %v streams on spares, %v spares closed by the server, learned limit %vs, %v retries",
		ok.Load(), failed.Load(), srv.served.Load(), srv.cutoff.Load(), srv.leaked.Load(), srv.leakedBy.Load(), pooled, peerClosed, learned, retries)
	if failed.Load() != 0 {
		t.Errorf("%d streams failed", failed.Load())
	}
	if n := srv.leaked.Load(); n != 0 {
		t.Errorf("%d connections sent %d bytes (Trojan headers) after the server had given up on them", n, srv.leakedBy.Load())
	}
	if srv.cutoff.Load() == 0 || peerClosed <= 0 {
		t.Errorf("the server gave up on %d silent connections and the client saw %v: the test did not exercise the limit", srv.cutoff.Load(), peerClosed)
	}
	if learned < limit.Seconds() || learned > limit.Seconds()+0.5 {
		t.Errorf("learned limit %vs, the server's is %v", learned, limit)
	}
	if pooled < float64(ok.Load())/2 {
		t.Errorf("only %v of %d streams rode a spare", pooled, ok.Load())
	}
}
