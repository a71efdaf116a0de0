package cli

import (
	"fmt"
	"io"
	"runtime"

	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/tfo"
)

// demoTFONote says what TCP Fast Open can do on this machine, and how to enable what is missing. The
// demo never changes system settings itself.
func demoTFONote(out io.Writer) {
	s, err := tfo.ReadSysctl()
	switch {
	case err != nil:
		fmt.Fprintf(out, "tcp fast open: not available on %s; the demo runs without it\n\n", runtime.GOOS)
	case s.Client() && s.Server():
		fmt.Fprintf(out, "tcp fast open: on (%s = %d); the first fetch gets a cookie, the next ones send the TLS ClientHello in the SYN\n\n", tfo.SysctlKey, int(s))
	default:
		var missing string
		switch {
		case !s.Client() && !s.Server():
			missing = "neither the client bit 0x1 nor the server bit 0x2"
		case !s.Server():
			missing = "the server bit 0x2 missing, so the server cannot accept data in a SYN"
		default:
			missing = "the client bit 0x1 missing, so the client cannot send data in a SYN"
		}
		fmt.Fprintf(out, "tcp fast open: %s = %d, with %s; every fetch works, with a normal handshake.\n"+
			"  To see TFO save a round trip, run (as root; the demo does not change system settings): %s\n\n",
			tfo.SysctlKey, int(s), missing, s.Fix())
	}
}

// demoHandshakes collects the client's handshakes with the server, one per fetch.
type demoHandshakes chan outbound.HandshakeInfo

func (d demoHandshakes) observe(h outbound.HandshakeInfo) {
	select {
	case d <- h:
	default: // more handshakes than fetches (a retry): keep the first ones
	}
}

// next describes the handshake of the fetch that just ended.
func (d demoHandshakes) next() string {
	select {
	case h := <-d:
		s := "tfo: " + h.TFO.String()
		if h.HelloBytes > 0 {
			s += fmt.Sprintf(" (ClientHello %d bytes", h.HelloBytes)
			if h.Resumed {
				s += ", resumed"
			}
			s += ")"
		}
		return s
	default:
		return "tfo: unknown (no handshake seen)"
	}
}
