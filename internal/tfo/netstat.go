package tfo

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ParseNetstat reads the counters of one section ("TcpExt", "IpExt", ...) of /proc/net/netstat or
// /proc/net/snmp: a header line "Section: name name ..." followed by a value line
// "Section: value value ...".
func ParseNetstat(raw []byte, section string) (map[string]uint64, error) {
	tag := []byte(section + ":")
	lines := bytes.Split(raw, []byte("\n"))
	for i := 0; i+1 < len(lines); i++ {
		names, ok := bytes.CutPrefix(lines[i], tag)
		if !ok {
			continue
		}
		values, ok := bytes.CutPrefix(lines[i+1], tag)
		if !ok {
			return nil, fmt.Errorf("%s: header line without value line", section)
		}
		nf, vf := bytes.Fields(names), bytes.Fields(values)
		if len(nf) != len(vf) {
			return nil, fmt.Errorf("%s: %d names but %d values", section, len(nf), len(vf))
		}
		m := make(map[string]uint64, len(nf))
		for j := range nf {
			v, err := strconv.ParseUint(string(vf[j]), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", section, nf[j], err)
			}
			m[string(nf[j])] = v
		}
		return m, nil
	}
	return nil, fmt.Errorf("no %s section", section)
}

// FastOpenPrefix starts the name of every TFO counter in TcpExt (TCPFastOpenActive,
// TCPFastOpenPassive, TCPFastOpenCookieReqd, ...; DESIGN.md 3.8).
const FastOpenPrefix = "TCPFastOpen"

// FastOpenCounters returns the TCPFastOpen* entries of a TcpExt map.
func FastOpenCounters(tcpExt map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range tcpExt {
		if strings.HasPrefix(k, FastOpenPrefix) {
			out[k] = v
		}
	}
	return out
}
