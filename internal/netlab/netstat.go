package netlab

import "github.com/fastrojan/fastrojan/internal/tfo"

// parseNetstat reads the counters of one section ("TcpExt", "IpExt", ...)
// of /proc/net/netstat or /proc/net/snmp; the parser lives in package tfo,
// which reads the same counters for metrics.
func parseNetstat(raw []byte, section string) (map[string]uint64, error) {
	return tfo.ParseNetstat(raw, section)
}
