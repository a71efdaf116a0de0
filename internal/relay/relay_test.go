package relay

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { d.Close(); r.c.Close() })
	return d.(*net.TCPConn), r.c.(*net.TCPConn)
}

// opaque hides the concrete *net.TCPConn so Pipe takes the chunked path, as it does for TLS.
type opaque struct{ net.Conn }

func (o opaque) CloseWrite() error { return o.Conn.(*net.TCPConn).CloseWrite() }

// socketOnly is opaque but still exposes the socket, as a TCP source on the chunked path does: Pipe
// then waits for data without holding a buffer.
type socketOnly struct{ opaque }

func (s socketOnly) SyscallConn() (syscall.RawConn, error) {
	return s.Conn.(*net.TCPConn).SyscallConn()
}

// setup builds peerA ⇄ a  [Pipe]  b ⇄ peerB and runs Pipe in the background.
type setup struct {
	peerA, peerB *net.TCPConn
	done         chan result
}

type result struct {
	aToB, bToA int64
	err        error
}

func newSetup(t testing.TB, chunked bool, idle time.Duration) *setup {
	return newSetupWith(t, chunked, idle, Pipe)
}

func newSetupWith(t testing.TB, chunked bool, idle time.Duration, pipe func(a, b net.Conn, idle time.Duration) (int64, int64, error)) *setup {
	peerA, a := tcpPair(t)
	b, peerB := tcpPair(t)
	var ca, cb net.Conn = a, b
	if chunked {
		ca, cb = chunkedWrap(a), chunkedWrap(b)
	}
	s := &setup{peerA: peerA, peerB: peerB, done: make(chan result, 1)}
	go func() {
		x, y, err := pipe(ca, cb, idle)
		s.done <- result{x, y, err}
	}()
	return s
}

func (s *setup) wait(t testing.TB, within time.Duration) result {
	t.Helper()
	select {
	case r := <-s.done:
		return r
	case <-time.After(within):
		t.Fatalf("Pipe still running after %v", within)
	}
	panic("unreachable")
}

// chunkedWrap is how the chunked modes hide a connection's type from Pipe.
var chunkedWrap = func(c *net.TCPConn) net.Conn { return opaque{c} }

// modes runs f over the three copy paths: splice (TCP to TCP), chunked with sources that have their
// own buffers (as TLS), and chunked with socket sources, where Pipe waits without a buffer.
func modes(t *testing.T, f func(t *testing.T, chunked bool)) {
	t.Run("splice", func(t *testing.T) { f(t, false) })
	t.Run("chunked", func(t *testing.T) { f(t, true) })
	t.Run("chunked-socket", func(t *testing.T) {
		old := chunkedWrap
		chunkedWrap = func(c *net.TCPConn) net.Conn { return socketOnly{opaque{c}} }
		defer func() { chunkedWrap = old }()
		f(t, true)
	})
}

func TestPipeBulkBothWays(t *testing.T) {
	modes(t, func(t *testing.T, chunked bool) {
		const size = 8 << 20
		s := newSetup(t, chunked, time.Minute)
		up, down := make([]byte, size), make([]byte, size+12345)
		rand.Read(up)
		rand.Read(down)
		var wg sync.WaitGroup
		send := func(c *net.TCPConn, p []byte) {
			defer wg.Done()
			if _, err := c.Write(p); err != nil {
				t.Error(err)
			}
			c.CloseWrite()
		}
		var gotUp, gotDown []byte
		recv := func(c *net.TCPConn, into *[]byte) {
			defer wg.Done()
			b, err := io.ReadAll(c)
			if err != nil {
				t.Error(err)
			}
			*into = b
		}
		wg.Add(4)
		go send(s.peerA, up)
		go send(s.peerB, down)
		go recv(s.peerB, &gotUp)
		go recv(s.peerA, &gotDown)
		wg.Wait()
		if sha256.Sum256(gotUp) != sha256.Sum256(up) || sha256.Sum256(gotDown) != sha256.Sum256(down) {
			t.Fatalf("corrupted: up %d/%d bytes, down %d/%d bytes", len(gotUp), len(up), len(gotDown), len(down))
		}
		r := s.wait(t, 5*time.Second)
		if r.err != nil || r.aToB != int64(len(up)) || r.bToA != int64(len(down)) {
			t.Fatalf("Pipe = %d, %d, %v; want %d, %d, nil", r.aToB, r.bToA, r.err, len(up), len(down))
		}
	})
}

// TestPipeHalfClose: A finishes sending; B sees EOF and can still answer; then B closes and A sees EOF.
func TestPipeHalfClose(t *testing.T) {
	modes(t, func(t *testing.T, chunked bool) {
		s := newSetup(t, chunked, time.Minute)
		s.peerA.Write([]byte("question"))
		s.peerA.CloseWrite()
		got, err := io.ReadAll(s.peerB)
		if err != nil || string(got) != "question" {
			t.Fatalf("B read %q, %v; want the question then EOF", got, err)
		}
		select {
		case r := <-s.done:
			t.Fatalf("Pipe ended after one half-close: %+v", r)
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := s.peerB.Write([]byte("answer after EOF")); err != nil {
			t.Fatal(err)
		}
		s.peerB.CloseWrite()
		got, err = io.ReadAll(s.peerA)
		if err != nil || string(got) != "answer after EOF" {
			t.Fatalf("A read %q, %v; want the answer then EOF", got, err)
		}
		r := s.wait(t, 2*time.Second)
		if r.err != nil || r.aToB != 8 || r.bToA != 16 {
			t.Fatalf("Pipe = %+v", r)
		}
	})
}

// TestPipeUntilEOF: once B (a fallback site) ends, A gets everything B sent and EOF, bytes A sends
// right after still reach B, and the pipe ends within LeaderGrace though A never closes.
func TestPipeUntilEOF(t *testing.T) {
	modes(t, func(t *testing.T, chunked bool) {
		s := newSetupWith(t, chunked, time.Minute, PipeUntilEOF)
		s.peerB.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
		s.peerB.CloseWrite()
		got, err := io.ReadAll(s.peerA)
		if err != nil || string(got) != "HTTP/1.1 400 Bad Request\r\n\r\n" {
			t.Fatalf("A read %q, %v; want the answer then EOF", got, err)
		}
		s.peerA.Write([]byte("late"))
		late := make([]byte, 4)
		if _, err := io.ReadFull(s.peerB, late); err != nil || string(late) != "late" {
			t.Fatalf("bytes sent during the grace did not reach B: %q %v", late, err)
		}
		start := time.Now()
		r := s.wait(t, LeaderGrace+time.Second)
		if r.err != nil || r.bToA != 28 || r.aToB != 4 {
			t.Fatalf("PipeUntilEOF = %+v", r)
		}
		if waited := time.Since(start); waited > LeaderGrace+500*time.Millisecond {
			t.Fatalf("ended %v after B's EOF", waited)
		}
	})
}

func TestPipeIdle(t *testing.T) {
	modes(t, func(t *testing.T, chunked bool) {
		const idle = 200 * time.Millisecond
		start := time.Now() // before newSetup, which starts the pipe and with it the idle clock
		s := newSetup(t, chunked, idle)
		r := s.wait(t, 3*time.Second)
		el := time.Since(start)
		if !errors.Is(r.err, ErrIdle) {
			t.Fatalf("err = %v, want ErrIdle", r.err)
		}
		// Splice windows are idle/2 long, so silence is noticed between idle and 1.5×idle.
		if el < idle || el > 2*idle+300*time.Millisecond {
			t.Fatalf("idle pipe ended after %v, want about %v", el, idle)
		}
	})
}

// TestPipeOneWayTrafficIsNotIdle: a download with a silent upload lasts longer than idle.
func TestPipeOneWayTrafficIsNotIdle(t *testing.T) {
	modes(t, func(t *testing.T, chunked bool) {
		const idle = 300 * time.Millisecond
		s := newSetup(t, chunked, idle)
		stop := time.Now().Add(3 * idle)
		go io.Copy(io.Discard, s.peerA)
		for time.Now().Before(stop) {
			if _, err := s.peerB.Write([]byte("tick")); err != nil {
				t.Fatalf("write after %v: %v", time.Until(stop), err)
			}
			time.Sleep(idle / 10)
		}
		select {
		case r := <-s.done:
			t.Fatalf("Pipe ended during one-way traffic: %+v", r)
		default:
		}
		// Then silence: the pipe must end by itself.
		r := s.wait(t, 3*time.Second)
		if !errors.Is(r.err, ErrIdle) {
			t.Fatalf("err = %v, want ErrIdle", r.err)
		}
	})
}

// TestPipeIdleAfterHalfClose: once one direction ended, the other still times out when silent.
func TestPipeIdleAfterHalfClose(t *testing.T) {
	modes(t, func(t *testing.T, chunked bool) {
		const idle = 150 * time.Millisecond
		s := newSetup(t, chunked, idle)
		s.peerA.CloseWrite()
		if r := s.wait(t, 3*time.Second); !errors.Is(r.err, ErrIdle) {
			t.Fatalf("err = %v, want ErrIdle", r.err)
		}
	})
}

// TestPipeStalledReader: B stops reading while A keeps sending; the pipe ends instead of hanging.
func TestPipeStalledReader(t *testing.T) {
	modes(t, func(t *testing.T, chunked bool) {
		const idle = 200 * time.Millisecond
		s := newSetup(t, chunked, idle)
		go func() {
			chunk := make([]byte, 64<<10)
			s.peerA.SetWriteDeadline(time.Now().Add(5 * time.Second))
			for {
				if _, err := s.peerA.Write(chunk); err != nil {
					return
				}
			}
		}()
		r := s.wait(t, 5*time.Second)
		if !errors.Is(r.err, ErrIdle) {
			t.Fatalf("err = %v, want ErrIdle (write stalled)", r.err)
		}
	})
}

// TestPipeReset: a reset on one side ends both directions at once with an error.
func TestPipeReset(t *testing.T) {
	modes(t, func(t *testing.T, chunked bool) {
		s := newSetup(t, chunked, time.Minute)
		s.peerB.Write([]byte("x"))
		buf := make([]byte, 1)
		if _, err := io.ReadFull(s.peerA, buf); err != nil {
			t.Fatal(err)
		}
		s.peerA.SetLinger(0)
		s.peerA.Close() // RST
		r := s.wait(t, 2*time.Second)
		if !errors.Is(r.err, syscall.ECONNRESET) {
			t.Fatalf("err = %v, want ECONNRESET", r.err)
		}
		if r.bToA != 1 {
			t.Fatalf("bToA = %d, want 1", r.bToA)
		}
	})
}

// TestPipeNoHalfClose: with a side that cannot half-close, EOF ends the whole pipe without error.
func TestPipeNoHalfClose(t *testing.T) {
	a, peerA := net.Pipe()
	peerB, b := tcpPair(t)
	defer a.Close()
	defer peerA.Close()
	done := make(chan result, 1)
	go func() {
		x, y, err := Pipe(a, b, time.Minute)
		done <- result{x, y, err}
	}()
	peerB.Write([]byte("hi"))
	peerB.CloseWrite()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(peerA, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.bToA != 2 {
			t.Fatalf("Pipe = %+v", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Pipe did not end")
	}
}

func TestCloseWriteUnsupported(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := CloseWrite(a); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("CloseWrite(net.Pipe) = %v, want ErrUnsupported", err)
	}
}

func benchmarkPipe(b *testing.B, chunked bool) {
	s := newSetup(b, chunked, time.Minute)
	go io.Copy(io.Discard, s.peerB)
	chunk := bytes.Repeat([]byte{'x'}, 256<<10)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := s.peerA.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	s.peerA.CloseWrite()
	s.peerB.CloseWrite()
	s.wait(b, 10*time.Second)
}

func BenchmarkPipeSplice(b *testing.B)  { benchmarkPipe(b, false) }
func BenchmarkPipeChunked(b *testing.B) { benchmarkPipe(b, true) }
