package outbound

import (
	"net"
	"time"

	"github.com/fastrojan/fastrojan/internal/tfo"
)

// HandshakeInfo is what one connection to a Trojan server showed, for logs and metrics.
type HandshakeInfo struct {
	Server     string
	Duration   time.Duration // dial start to TLS handshake done (or failed)
	TFO        tfo.Outcome   // read from the kernel once the server answered
	HelloBytes int           // size of the first write: the ClientHello record, what a TFO SYN must carry
	Resumed    bool          // the TLS session was resumed
	Err        error         // nil when the handshake succeeded
	Raced      bool          // a plain connection was raced alongside a late TFO attempt (Trojan.Paths)
}

// firstWrite records the size of the first write on the connection below TLS (the ClientHello).
// It exposes the connection below with NetConn, so tfo and relay still find the socket.
type firstWrite struct {
	net.Conn
	n int // written once, by the handshake, before anyone else uses the connection
}

func (f *firstWrite) Write(b []byte) (int, error) {
	if f.n == 0 {
		f.n = len(b)
	}
	return f.Conn.Write(b)
}

// NetConn returns the connection below.
func (f *firstWrite) NetConn() net.Conn { return f.Conn }
