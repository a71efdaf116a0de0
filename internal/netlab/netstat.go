package netlab

import (
	"bytes"
	"fmt"
	"strconv"
)

// parseNetstat reads the counters of one section ("TcpExt", "IpExt", ...)
// of /proc/net/netstat or /proc/net/snmp: a header line "Prefix: name
// name ..." followed by a value line "Prefix: value value ...".
func parseNetstat(raw []byte, section string) (map[string]uint64, error) {
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
