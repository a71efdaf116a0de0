package mux

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// DefaultMaxStreams bounds the streams open at once in one session on the server; a stream beyond
// it is closed at once (trojan-go's default client opens at most 8).
const DefaultMaxStreams = 128

// ServerOptions configure Serve.
type ServerOptions struct {
	MaxStreams    int           // streams open at once per session; default DefaultMaxStreams
	HeaderTimeout time.Duration // a stream's SimpleSocks header must arrive within this; default 10s
}

// Stream is one stream of a session, its SimpleSocks header read.
type Stream struct {
	net.Conn
	Cmd  trojan.Command
	Dest trojan.Addr
}

// SessionStats count what one session carried.
type SessionStats struct {
	Streams   int64 // streams handed to the handler
	BadHeader int64 // streams closed for a bad or missing SimpleSocks header
	OverLimit int64 // streams closed for exceeding MaxStreams
}

// Serve runs a mux session on conn, whose Trojan request (CMD 0x7f) has been read; pre holds the
// bytes read after it. Each stream whose SimpleSocks header is good goes to handle, in its own
// goroutine, which must close it; a stream with a bad header is closed alone. Serve returns when the
// session ends (conn closed, protocol error, keep-alive timeout) and every handler has returned; it
// does not close conn.
func Serve(conn net.Conn, pre []byte, opts ServerOptions, handle func(*Stream)) (SessionStats, error) {
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = DefaultMaxStreams
	}
	if opts.HeaderTimeout <= 0 {
		opts.HeaderTimeout = 10 * time.Second
	}
	var st SessionStats
	sess, err := smux.Server(&preConn{Conn: conn, pending: pre}, smux.DefaultConfig())
	if err != nil {
		return st, fmt.Errorf("mux session: %w", err)
	}
	defer sess.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	var open atomic.Int64
	var streams, bad, over atomic.Int64
	for {
		s, err := sess.AcceptStream()
		if err != nil {
			wg.Wait()
			st = SessionStats{Streams: streams.Load(), BadHeader: bad.Load(), OverLimit: over.Load()}
			if sess.IsClosed() {
				return st, nil
			}
			return st, fmt.Errorf("mux accept: %w", err)
		}
		if open.Add(1) > int64(opts.MaxStreams) {
			open.Add(-1)
			over.Add(1)
			_ = s.Close()
			continue
		}
		wg.Add(1)
		go func() { // owned by Serve: it waits for every stream's goroutine
			defer wg.Done()
			defer open.Add(-1)
			_ = s.SetReadDeadline(time.Now().Add(opts.HeaderTimeout))
			cmd, dest, err := ReadHeader(s)
			if err != nil {
				bad.Add(1)
				_ = s.Close()
				return
			}
			_ = s.SetReadDeadline(time.Time{})
			streams.Add(1)
			handle(&Stream{Conn: s, Cmd: cmd, Dest: dest})
		}()
	}
}

// preConn reads pending first, then conn.
type preConn struct {
	net.Conn
	pending []byte
}

func (p *preConn) Read(b []byte) (int, error) {
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
