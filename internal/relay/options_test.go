package relay

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestPipeOptsCountsWhileRunning: the counters of a long connection grow while it is still open (so
// quotas can be enforced mid-connection), and at the end equal the returned counts.
func TestPipeOptsCountsWhileRunning(t *testing.T) {
	modes(t, func(t *testing.T, chunked bool) {
		var up, down atomic.Int64
		s := newSetupWith(t, chunked, 30*time.Second, func(a, b net.Conn, idle time.Duration) (int64, int64, error) {
			return PipeOpts(a, b, Options{Idle: idle, AToB: &up, BToA: &down})
		})
		go io.Copy(io.Discard, s.peerA)
		go io.Copy(io.Discard, s.peerB)
		chunk := make([]byte, 64<<10)
		// Keep a trickle going both ways; within 3 CountWindows the counters must show it.
		deadline := time.Now().Add(3 * CountWindow)
		var sentUp, sentDown int64
		for time.Now().Before(deadline) && (up.Load() == 0 || down.Load() == 0) {
			n, err := s.peerA.Write(chunk)
			sentUp += int64(n)
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.peerB.Write(chunk[:1000])
			sentDown += int64(m)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if up.Load() == 0 || down.Load() == 0 {
			t.Fatalf("counters still at up=%d down=%d after %v of traffic on an open pipe", up.Load(), down.Load(), 3*CountWindow)
		}
		_ = s.peerA.CloseWrite()
		_ = s.peerB.CloseWrite()
		r := s.wait(t, 10*time.Second)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.aToB != sentUp || r.bToA != sentDown {
			t.Errorf("returned %d/%d, sent %d/%d", r.aToB, r.bToA, sentUp, sentDown)
		}
		if up.Load() != r.aToB || down.Load() != r.bToA {
			t.Errorf("counters %d/%d, returned %d/%d", up.Load(), down.Load(), r.aToB, r.bToA)
		}
	})
}

// TestPipeOptsUntilEOF: the option behaves as PipeUntilEOF: b's end ends the pipe although a stays open.
func TestPipeOptsUntilEOF(t *testing.T) {
	s := newSetupWith(t, true, 30*time.Second, func(a, b net.Conn, idle time.Duration) (int64, int64, error) {
		return PipeOpts(a, b, Options{Idle: idle, UntilEOF: true})
	})
	go io.Copy(io.Discard, s.peerA)
	if _, err := s.peerB.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	_ = s.peerB.Close()
	r := s.wait(t, LeaderGrace+5*time.Second)
	if r.bToA != 3 {
		t.Errorf("bToA = %d, want 3", r.bToA)
	}
}
