package doctor

import (
	"net"
	"time"

	"github.com/fastrojan/fastrojan/internal/tfo"
)

// KernelRTT returns the kernel's smoothed round-trip time estimate (tcpi_rtt) of a TCP connection,
// unwrapping *tls.Conn and other wrappers that have NetConn(). It is tfo.KernelRTT.
func KernelRTT(c net.Conn) (time.Duration, error) { return tfo.KernelRTT(c) }
