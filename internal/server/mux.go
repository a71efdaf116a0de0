package server

import (
	"net"
	"sync"
	"time"

	"github.com/fastrojan/fastrojan/internal/mux"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// outMux is the outcome of a connection that carried a trojan-go mux session.
const outMux = "mux"

// serveMux runs a trojan-go mux session (CMD 0x7f from a known user) on client: every stream is
// handled like a connection of its own (CONNECT or UDP ASSOCIATE, with the user's accounting and
// quota, reported to OnConn with MuxStream set), a stream with a bad SimpleSocks header ends alone,
// and at most MaxMuxStreams are open at once. pre, in rb, is what followed the request header.
func (s *Server) serveMux(client net.Conn, pre []byte, rb *requestBuf, l *connLog) {
	pending := append([]byte(nil), pre...)
	rb.release()
	l.outcome = outMux
	s.muxSessions.Add(1)
	_ = client.SetReadDeadline(time.Time{}) // the session's own keep-alive ends a dead peer
	var mu sync.Mutex
	st, err := mux.Serve(client, pending, mux.ServerOptions{MaxStreams: s.opts.MaxMuxStreams, HeaderTimeout: s.opts.RequestTimeout},
		func(st *mux.Stream) {
			defer st.Close()
			s.muxStreams.Add(1)
			start := time.Now()
			sl := connLog{user: l.user, dest: st.Dest.String(), sess: l.sess}
			switch st.Cmd {
			case trojan.CmdUDPAssociate:
				s.udpAssociate(st, nil, nil, &sl)
			default:
				if relayStream := s.connect(st, trojan.Request{Cmd: st.Cmd, Dest: st.Dest}, firstBytes(st), nil, &sl); relayStream != nil {
					relayStream()
				}
			}
			mu.Lock()
			l.up += sl.up
			l.down += sl.down
			mu.Unlock()
			s.reportStream(st, &sl, start)
		})
	l.dest = ""
	l.err = err
	s.muxBadStreams.Add(st.BadHeader + st.OverLimit)
}

// firstBytes returns what the client sent right behind the stream's header (usually in the same
// frame), without waiting for more, so the dial to the target can carry it in the SYN.
func firstBytes(st *mux.Stream) []byte {
	buf := make([]byte, 16<<10)
	_ = st.SetReadDeadline(time.Now().Add(time.Millisecond))
	n, _ := st.Read(buf)
	_ = st.SetReadDeadline(time.Time{})
	return buf[:n]
}
