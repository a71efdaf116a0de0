package outbound

import (
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
