package outbound_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/server"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tfo/pathstate"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
)

// noLeaks checks, after the test and its cleanups, that no goroutine it started is left.
func noLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// syncBuf is a log destination tests read back.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is a real Trojan server on addr (loopback) logging at debug level into logs.
type testServer struct {
	srv  *server.Server
	addr string
	logs *syncBuf
	pool *x509.CertPool
}

func startServer(t *testing.T, addr string) *testServer {
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
	logs := &syncBuf{}
	srv, err := server.New(server.Options{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Users:     users.NewStatic([]string{"pw"}),
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return &testServer{srv: srv, addr: ln.Addr().String(), logs: logs, pool: pool}
}

// quiet fails the test if the server logged anything above debug level.
func (s *testServer) quiet(t *testing.T) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(s.logs.String()), "\n") {
		if line != "" && !strings.Contains(line, "level=DEBUG") {
			t.Errorf("server logged above debug: %s", line)
		}
	}
}

func (s *testServer) trojan(paths *pathstate.Table, dial func(context.Context, string, string) (net.Conn, error)) (*outbound.Trojan, *[]outbound.HandshakeInfo) {
	var infos []outbound.HandshakeInfo
	return &outbound.Trojan{
		Server:           s.addr,
		TLS:              &tls.Config{RootCAs: s.pool, ServerName: "localhost"},
		Hash:             trojan.HashPassword("pw"),
		HandshakeTimeout: 3 * time.Second,
		DialTFO:          dial,
		Paths:            paths,
		Observe:          func(h outbound.HandshakeInfo) { infos = append(infos, h) },
	}, &infos
}

// stallConn is a connection whose writes hang until it is closed: a TFO connection whose SYN was
// answered but whose handshake stalls.
type stallConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *stallConn) Write([]byte) (int, error) {
	<-c.closed
	return 0, net.ErrClosed
}

func (c *stallConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *stallConn) NetConn() net.Conn { return c.Conn }

// stallDial dials for real and returns a stalling connection; it counts its calls.
func stallDial(calls *atomic.Int32) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		calls.Add(1)
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &stallConn{Conn: c, closed: make(chan struct{})}, nil
	}
}

func quietPaths(o pathstate.Options) *pathstate.Table {
	o.Logger = slog.New(slog.DiscardHandler)
	return pathstate.New(o)
}

// A TFO attempt whose handshake stalls is raced by a plain connection after the racing delay; the
// plain one wins, the stalled one is closed, and the server sheds it without logging above debug.
// One stall makes the server suspect, a second (with StallsToDisable 2) disables TFO, and the next
// connection goes plain without trying TFO at all.
func TestRacePlainWinsOverStall(t *testing.T) {
	noLeaks(t)
	s := startServer(t, "127.0.0.1:0")
	paths := quietPaths(pathstate.Options{RaceDelay: 50 * time.Millisecond, StallsToDisable: 2})
	var calls atomic.Int32
	tr, infos := s.trojan(paths, stallDial(&calls))
	wantStates := []pathstate.State{pathstate.Suspect, pathstate.Disabled}
	for i, want := range wantStates {
		start := time.Now()
		conn, err := tr.Handshake(context.Background())
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("handshake %d took %v; the race should have started after 50ms", i, took)
		}
		_ = conn.Close()
		h := (*infos)[i]
		if !h.Raced || h.Err != nil || h.TFO != tfo.NotAttempted {
			t.Errorf("handshake %d: %+v; want a raced plain winner", i, h)
		}
		st, _ := paths.Server(s.addr)
		if st.State != want || st.Races != uint64(i+1) || st.RacesPlain != uint64(i+1) {
			t.Errorf("after handshake %d: state %s (%q), races %d won by plain %d; want %s", i, st.State, st.Reason, st.Races, st.RacesPlain, want)
		}
	}
	conn, err := tr.Handshake(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	if h := (*infos)[2]; h.Raced || calls.Load() != 2 {
		t.Errorf("with TFO disabled: raced %v, TFO dials %d; want a plain connection without a TFO dial", h.Raced, calls.Load())
	}
	_ = s.srv.Close()
	s.quiet(t)
	if !strings.Contains(s.logs.String(), "outcome=") {
		t.Errorf("the server logged no connection at debug level; the test sees nothing:\n%s", s.logs.String())
	}
}

// A TFO attempt that fails at once (a middlebox resetting SYNs with data) gets a plain connection
// right away, which succeeds: TFO is disabled for the server, saying why.
func TestRaceTFOFailureFallsBackAtOnce(t *testing.T) {
	noLeaks(t)
	s := startServer(t, "127.0.0.1:0")
	paths := quietPaths(pathstate.Options{RaceDelay: time.Second})
	tr, infos := s.trojan(paths, func(context.Context, string, string) (net.Conn, error) {
		return nil, fmt.Errorf("read: %w", syscall.ECONNRESET)
	})
	start := time.Now()
	conn, err := tr.Handshake(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("took %v; the plain connection should start as soon as TFO failed, not after the 1s racing delay", took)
	}
	st, _ := paths.Server(s.addr)
	if st.State != pathstate.Disabled || !strings.Contains(st.Reason, "connection reset by peer") {
		t.Errorf("state %s (%q); want disabled, naming the failure", st.State, st.Reason)
	}
	if h := (*infos)[0]; h.Err != nil || !h.Raced {
		t.Errorf("handshake: %+v", h)
	}
	s.quiet(t)
}

// When every attempt fails the error says why, nothing is left running, and TFO stays on: the
// server is down, not the path.
func TestRaceAllFail(t *testing.T) {
	noLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	paths := quietPaths(pathstate.Options{RaceDelay: 20 * time.Millisecond})
	var d net.Dialer
	tr := &outbound.Trojan{Server: addr, TLS: &tls.Config{ServerName: "localhost"}, HandshakeTimeout: time.Second, DialTFO: d.DialContext, Paths: paths}
	_, err = tr.Handshake(context.Background())
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("handshake: %v, want connection refused", err)
	}
	if st, _ := paths.Server(addr); st.State != pathstate.Working {
		t.Errorf("state %s (%q) after a refused connection; want working", st.State, st.Reason)
	}
}

// A name with two addresses, the first of which accepts TCP but never completes TLS: the second
// starts once the first is late by the racing delay, and the handshake completes through it.
func TestRaceSecondAddress(t *testing.T) {
	noLeaks(t)
	stall, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	port := stall.Addr().(*net.TCPAddr).Port
	s := startServer(t, fmt.Sprintf("127.0.0.2:%d", port))
	paths := quietPaths(pathstate.Options{RaceDelay: 100 * time.Millisecond})
	var d net.Dialer
	tr, infos := s.trojan(paths, d.DialContext)
	tr.Server = fmt.Sprintf("trojan.test:%d", port)
	tr.Resolve = func(_ context.Context, host string) ([]netip.Addr, error) {
		if host != "trojan.test" {
			return nil, fmt.Errorf("unknown host %q", host)
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}, nil
	}
	start := time.Now()
	conn, err := tr.Handshake(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	defer conn.Close()
	if got := conn.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.2" {
		t.Errorf("connected to %s, want the second address", got)
	}
	if took < 100*time.Millisecond || took > 600*time.Millisecond {
		t.Errorf("took %v; want the racing delay (100ms) plus a loopback handshake", took)
	}
	if h := (*infos)[0]; h.Err != nil {
		t.Errorf("handshake: %+v", h)
	}
	if st, ok := paths.Server(s.addr); !ok || st.State != pathstate.Working {
		t.Errorf("second address state %+v", st)
	}
}

// When the first address wins, the second's TFO attempt, still running without a plain partner, is
// abandoned without anything new being started for it, and nothing is left running.
func TestRaceWinnerStopsTheRest(t *testing.T) {
	noLeaks(t)
	s := startServer(t, "127.0.0.1:0")
	port := s.addr[strings.LastIndex(s.addr, ":")+1:]
	stall, err := net.Listen("tcp", "127.0.0.2:"+port)
	if err != nil {
		t.Skipf("127.0.0.2:%s taken: %v", port, err)
	}
	defer stall.Close()
	paths := quietPaths(pathstate.Options{RaceDelay: 100 * time.Millisecond})
	var plainDials, tfoDials atomic.Int32
	var d net.Dialer
	stalling := stallDial(&tfoDials)
	// TFO to the first address stalls; TFO to the second reaches a listener that never answers TLS.
	tr, _ := s.trojan(paths, func(ctx context.Context, network, addr string) (net.Conn, error) {
		if strings.HasPrefix(addr, "127.0.0.1:") {
			return stalling(ctx, network, addr)
		}
		tfoDials.Add(1)
		return d.DialContext(ctx, network, addr)
	})
	tr.DialPlain = func(ctx context.Context, network, addr string) (net.Conn, error) {
		plainDials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	tr.Server = "trojan.test:" + port
	tr.Resolve = func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}, nil
	}
	conn, err := tr.Handshake(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.1" {
		t.Errorf("connected to %s, want the first address's plain connection", got)
	}
	// At 100ms the first address is late: its plain partner starts and so does the second address
	// (TFO). The plain one wins; the second's TFO attempt is abandoned and gets no plain partner.
	if p, f := plainDials.Load(), tfoDials.Load(); p != 1 || f != 2 {
		t.Errorf("%d plain and %d TFO dials, want 1 and 2", p, f)
	}
}
