package pool

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fastrojan/fastrojan/internal/tlsconf"
)

// testServer is a TLS server that, like Xray, closes a connection that sends nothing for silence
// (0: never), and otherwise answers "ok:" plus what it read first, then echoes.
type testServer struct {
	addr     string
	silence  time.Duration
	accepted atomic.Int64
	served   atomic.Int64 // connections that sent a request
	cutoff   atomic.Int64 // connections closed for silence
}

func startServer(t *testing.T, silence time.Duration) *testServer {
	t.Helper()
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String(), silence: silence}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); s.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

func (s *testServer) serve(c net.Conn) {
	defer c.Close()
	tc := c.(*tls.Conn)
	if err := tc.Handshake(); err != nil {
		return
	}
	if s.silence > 0 {
		_ = c.SetReadDeadline(time.Now().Add(s.silence))
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if n == 0 {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.cutoff.Add(1)
		}
		return
	}
	s.served.Add(1)
	_ = c.SetReadDeadline(time.Time{})
	if _, err := c.Write(append([]byte("ok:"), buf[:n]...)); err != nil {
		return
	}
	_, _ = io.Copy(c, c)
}

func (s *testServer) dial(ctx context.Context) (net.Conn, error) {
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519}}}
	return d.DialContext(ctx, "tcp", s.addr)
}

// roundTrip sends msg on conn and checks the answer.
func roundTrip(t *testing.T, conn net.Conn, msg string) {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	want := "ok:" + msg
	got := make([]byte, len(want))
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSparesZeroIsOff(t *testing.T) {
	if p := New(nil, Options{Spares: 0}); p != nil {
		t.Fatal("Spares 0 must give no pool")
	}
	var p *Pool
	if p.Stats() != (Stats{}) || p.Close() != nil {
		t.Fatal("a nil pool reports nothing and closes without error")
	}
}

// Nothing is opened before a stream starts; the first stream opens its own connection and spares
// after it; the next stream rides a spare; after Linger every spare is closed and none reopened.
func TestOnDemandThenLingerThenIdle(t *testing.T) {
	srv := startServer(t, 0)
	p := New(srv.dial, Options{Spares: 4, Linger: 400 * time.Millisecond, MaxAge: 5 * time.Second})
	defer p.Close()
	time.Sleep(150 * time.Millisecond)
	if n := srv.accepted.Load(); n != 0 {
		t.Fatalf("an idle pool opened %d connections", n)
	}
	c, pooled, err := p.Get(context.Background())
	if err != nil || pooled {
		t.Fatalf("first Get: pooled %v, %v; want a connection of its own", pooled, err)
	}
	roundTrip(t, c, "first")
	c.Close()
	waitFor(t, "a ready spare", func() bool { return p.Stats().Ready >= 1 })
	c, pooled, err = p.Get(context.Background())
	if err != nil || !pooled {
		t.Fatalf("second Get: pooled %v, %v; want a spare", pooled, err)
	}
	roundTrip(t, c, "second")
	c.Close()
	waitFor(t, "spares closed after Linger", func() bool { st := p.Stats(); return st.Ready == 0 && st.Opening == 0 })
	opened := srv.accepted.Load()
	time.Sleep(500 * time.Millisecond)
	if n := srv.accepted.Load(); n != opened {
		t.Fatalf("after Linger the pool opened %d more connections on an idle client", n-opened)
	}
	st := p.Stats()
	if st.Hits+st.Joined != 1 || st.Misses != 1 || st.Retired < 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A spare is retired at MaxAge and, while streams are recent, replaced.
func TestMaxAgeRetiresAndReplaces(t *testing.T) {
	srv := startServer(t, 0)
	p := New(srv.dial, Options{Spares: 1, Linger: 5 * time.Second, MaxAge: 300 * time.Millisecond})
	defer p.Close()
	c, _, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, "two retirements and their replacements", func() bool { st := p.Stats(); return st.Retired >= 2 && st.Opened >= 3 })
	st := p.Stats()
	if st.Opened < 3 || st.PeerClosed != 0 {
		t.Fatalf("stats %+v: want spares replaced as they age, none closed by the server", st)
	}
}

// A server that closes silent connections after 600ms: the pool sees it close spares, learns the
// limit, retires spares before it from then on (at 60% of it: the margin also absorbs a late check
// on a loaded machine), and no stream ever lands on a closed spare.
func TestLearnsServerLimit(t *testing.T) {
	const limit = 600 * time.Millisecond
	srv := startServer(t, limit)
	p := New(srv.dial, Options{Spares: 2, Linger: 10 * time.Second, MaxAge: 3 * time.Second})
	defer p.Close()
	c, _, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "x")
	c.Close()
	waitFor(t, "a spare closed by the server", func() bool { return p.Stats().PeerClosed >= 1 })
	learned := p.Stats().LearnedLimit
	if learned < limit || learned > limit+300*time.Millisecond {
		t.Fatalf("learned limit %v, server closes at %v", learned, limit)
	}
	// From now on spares are retired before the limit: every stream, at any gap, works first time.
	time.Sleep(2 * tick) // spares of the same age as the one seen closed go now
	closedBefore := srv.cutoff.Load()
	for _, gap := range []time.Duration{50, 550, 300, 750, 450, 150} {
		time.Sleep(gap * time.Millisecond)
		c, _, err := p.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "stream")
		c.Close()
	}
	time.Sleep(limit)
	st := p.Stats()
	if st.Retried != 0 {
		t.Fatalf("stats %+v: a stream needed a retry after the limit was learned", st)
	}
	if st.Hits+st.Joined == 0 {
		t.Fatalf("stats %+v: no stream rode a spare", st)
	}
	if n := srv.cutoff.Load() - closedBefore; n != 0 {
		t.Fatalf("the server closed %d more silent spares after the pool learned its limit", n)
	}
}

// A spare the server closed is never handed out: the check before use sees the FIN.
func TestClosedSpareIsNotUsed(t *testing.T) {
	const limit = 150 * time.Millisecond
	srv := startServer(t, limit)
	// MaxAge far above the limit and a check interval longer than the test's wait: only the check in
	// Get stands between the stream and the dead spare.
	p := New(srv.dial, Options{Spares: 1, Linger: 10 * time.Second, MaxAge: 10 * time.Second})
	defer p.Close()
	c, _, _ := p.Get(context.Background())
	c.Close()
	waitFor(t, "a ready spare", func() bool { return p.Stats().Ready == 1 })
	waitFor(t, "the server closing it", func() bool { return srv.cutoff.Load() >= 1 })
	c, _, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "after")
	c.Close()
	if st := p.Stats(); st.PeerClosed < 1 {
		t.Fatalf("stats %+v: the closed spare was not noticed", st)
	}
}

// A burst takes spares as they come and the pool grows towards Spares, never beyond.
func TestBurstIsBounded(t *testing.T) {
	srv := startServer(t, 0)
	p := New(srv.dial, Options{Spares: 3, Linger: 2 * time.Second, MaxAge: 5 * time.Second})
	defer p.Close()
	var wg sync.WaitGroup
	var maxHeld atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			st := p.Stats()
			if n := st.Ready + st.Opening; n > maxHeld.Load() {
				maxHeld.Store(n)
			}
		}
	}()
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := p.Get(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			msg := []byte{byte('a' + i%26)}
			c.Write(msg)
			got := make([]byte, 4)
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got[3:], msg) {
				t.Errorf("stream %d: %q %v", i, got, err)
			}
		}()
		time.Sleep(3 * time.Millisecond)
	}
	wg.Wait()
	close(stop)
	st := p.Stats()
	if m := maxHeld.Load(); m > 3 {
		t.Fatalf("held %d spares at once, Spares is 3", m)
	}
	if st.Hits+st.Joined == 0 {
		t.Fatalf("stats %+v: no stream of the burst rode a spare", st)
	}
}

// A stream on a spare that the server resets before answering is sent again, once, on a fresh
// connection, with everything written so far; the application sees one clean answer.
func TestRetryOnDeadSpare(t *testing.T) {
	srv := startServer(t, 0)
	// The "spare": a connection whose server side is closed just before the request arrives.
	dead, err := srv.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	killer := startServer(t, 50*time.Millisecond) // closes silent connections after 50ms
	spare, err := killer.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server closing the spare", func() bool { return killer.cutoff.Load() == 1 })
	time.Sleep(20 * time.Millisecond)

	spare.Write([]byte("req|")) // what the client sends on the spare: the request, before wrapping
	var retries atomic.Int64
	r := NewRetry(spare, 5*time.Second, func() (net.Conn, error) {
		c, err := srv.dial(context.Background())
		if err != nil {
			return nil, err
		}
		_, err = c.Write([]byte("req|"))
		return c, err
	}, func() { retries.Add(1) })
	defer r.Close()
	_ = r.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.Write([]byte("more")); err != nil {
		t.Fatalf("write after the request: %v", err)
	}
	want := "ok:req|"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatalf("read: %v (retries %d)", err, retries.Load())
	}
	// The fresh connection got the request, then (echoed) what followed it.
	rest := make([]byte, 4)
	if _, err := io.ReadFull(r, rest); err != nil || string(got)+string(rest) != "ok:req|more" {
		t.Fatalf("got %q %q, %v", got, rest, err)
	}
	if retries.Load() != 1 {
		t.Fatalf("%d retries, want 1", retries.Load())
	}
}

// Once the server answered, a failure is the stream's own: no retry.
func TestNoRetryAfterAnswer(t *testing.T) {
	srv := startServer(t, 0)
	c, err := srv.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var redials atomic.Int64
	r := NewRetry(c, 5*time.Second, func() (net.Conn, error) { redials.Add(1); return nil, errors.New("no") }, nil)
	roundTrip(t, r, "hello")
	c.(*tls.Conn).NetConn().Close() // the connection breaks after the answer
	if _, err := r.Read(make([]byte, 10)); err == nil {
		t.Fatal("read on a broken connection succeeded")
	}
	if redials.Load() != 0 {
		t.Fatal("a stream that had its answer was retried")
	}
	r.Close()
}

// Once the server has answered, a stream keeps nothing for a resend: not the bytes written since the
// request, not the first payload the redial function would send again. An idle tunnel would
// otherwise hold them as long as it stays open.
func TestRetryLetsGoOfReplayOnAnswer(t *testing.T) {
	srv := startServer(t, 0)
	c, err := srv.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	payload := new([2048]byte) // what the redial would send again: the request's first payload
	freed := make(chan struct{})
	runtime.SetFinalizer(payload, func(*[2048]byte) { close(freed) })
	r := NewRetry(c, 5*time.Second, func() (net.Conn, error) {
		return nil, fmt.Errorf("redial would resend %q...", payload[:8])
	}, nil)
	defer r.Close()
	roundTrip(t, r, "hello") // written before the answer: kept for a resend until then
	if r.replay != nil {
		t.Errorf("%d bytes kept for a resend after the answer", len(r.replay))
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		runtime.GC()
		select {
		case <-freed:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the first payload is still referenced after the server answered")
		}
	}
}

func TestCloseIsIdempotentAndStopsOpenings(t *testing.T) {
	block := make(chan struct{})
	p := New(func(ctx context.Context) (net.Conn, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-block:
			return nil, errors.New("unblocked")
		}
	}, Options{Spares: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := p.Get(ctx); err == nil {
		t.Fatal("Get with a dial that never returns succeeded")
	}
	p.Close()
	p.Close()
	close(block)
	if _, _, err := p.Get(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
}

// A stream that takes a ready spare (TryGet) opens its replacement only once the server's answer was
// handed on (Retry.WhenAnswered → Answered, at the Read after the one that returned the answer), so
// the replacement's TLS handshake does not compete with the stream's request and answer on either
// end, nor with the application's wake-up for the answer.
func TestHitRefillsAfterAnswer(t *testing.T) {
	srv := startServer(t, 0)
	p := New(srv.dial, Options{Spares: 1, Linger: 10 * time.Second, MaxAge: 5 * time.Second})
	defer p.Close()
	c, _, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, "a ready spare", func() bool { return p.Stats().Ready == 1 })
	spare := p.TryGet()
	if spare == nil {
		t.Fatal("TryGet found no spare")
	}
	if st := p.Stats(); st.Opening != 0 || st.Ready != 0 {
		t.Fatalf("stats %+v right after a hit: the replacement must wait for the answer", st)
	}
	r := NewRetry(spare, 5*time.Second, func() (net.Conn, error) { return nil, errors.New("no redial") }, nil).WhenAnswered(p.Answered)
	defer r.Close()
	if _, err := r.Write([]byte("req")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if n, err := r.Read(got); err != nil || string(got[:n]) != "ok:req" { // the test server answers in one write
		t.Fatalf("read %q, %v", got[:n], err)
	}
	if st := p.Stats(); st.Opening != 0 || st.Ready != 0 {
		t.Fatalf("stats %+v as the answer is handed on: the replacement must wait for the next Read", st)
	}
	// The relay's next Read (here one that times out) starts the replacement before it waits.
	_ = r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := r.Read(got); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("second read: %d bytes, %v; want a timeout", n, err)
	}
	if st := p.Stats(); st.Opening+st.Ready != 1 {
		t.Fatalf("stats %+v after the answer was handed on: want the replacement opening", st)
	}
	waitFor(t, "the replacement ready", func() bool { return p.Stats().Ready == 1 })
}
