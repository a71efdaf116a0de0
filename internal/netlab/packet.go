package netlab

import "encoding/binary"

// IP protocol numbers and TCP details the forwarder looks at.
const (
	protoTCP = 6
	protoUDP = 17

	tcpFlagFIN = 0x01
	tcpFlagSYN = 0x02
	tcpFlagRST = 0x04
	tcpFlagACK = 0x10

	tcpOptEnd      = 0
	tcpOptNOP      = 1
	tcpOptFastOpen = 34  // RFC 7413
	tcpOptExp      = 254 // experimental option; TFO used it with magic 0xF989 before 34
	tfoExpMagic    = 0xF989
)

// pktInfo is what parsePacket learns about one IP packet. Offsets index
// the slice that was parsed.
type pktInfo struct {
	version uint8 // 4 or 6
	proto   uint8 // transport protocol after IPv6 extension headers
	end     int   // end of the IP packet (total length), <= len(b)
	l4      int   // offset of the transport header, 0 if not parsed
	src     [16]byte
	dst     [16]byte

	// Valid when hasPorts (TCP or UDP, first fragment).
	hasPorts bool
	sport    uint16
	dport    uint16

	// Valid when isTCP.
	isTCP      bool
	tcpHdrLen  int
	tcpFlags   uint8
	payloadLen int
}

// parsePacket reads the IPv4 or IPv6 header and, when present and complete,
// the TCP or UDP header of b. It never panics on malformed input; ok is
// false when b is not a well-formed IP packet.
func parsePacket(b []byte) (pi pktInfo, ok bool) {
	if len(b) < 1 {
		return pi, false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return pi, false
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || total < ihl || total > len(b) {
			return pi, false
		}
		pi.version = 4
		pi.proto = b[9]
		pi.end = total
		copy(pi.src[:4], b[12:16])
		copy(pi.dst[:4], b[16:20])
		if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			return pi, true // later fragment: no transport header
		}
		pi.l4 = ihl
	case 6:
		if len(b) < 40 {
			return pi, false
		}
		total := 40 + int(binary.BigEndian.Uint16(b[4:6]))
		if total > len(b) {
			return pi, false
		}
		pi.version = 6
		pi.end = total
		copy(pi.src[:], b[8:24])
		copy(pi.dst[:], b[24:40])
		next, off := b[6], 40
		for i := 0; ; i++ {
			if i == 8 {
				pi.proto = next
				return pi, true // too many extension headers to bother
			}
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if off+8 > total {
					return pi, false
				}
				next, off = b[off], off+(int(b[off+1])+1)*8
				continue
			case 51: // authentication header
				if off+8 > total {
					return pi, false
				}
				next, off = b[off], off+(int(b[off+1])+2)*4
				continue
			case 44: // fragment
				if off+8 > total {
					return pi, false
				}
				if binary.BigEndian.Uint16(b[off+2:off+4])&0xfff8 != 0 {
					pi.proto = b[off]
					return pi, true // later fragment
				}
				next, off = b[off], off+8
				continue
			}
			break
		}
		if off > total {
			return pi, false
		}
		pi.proto = next
		pi.l4 = off
	default:
		return pi, false
	}

	pi.parseTransport(b)
	return pi, true
}

// parseTransport reads the TCP or UDP header at pi.l4, when it is there whole.
func (pi *pktInfo) parseTransport(b []byte) {
	switch pi.proto {
	case protoTCP:
		if pi.l4+20 > pi.end {
			return
		}
		hl := int(b[pi.l4+12]>>4) * 4
		if hl < 20 || pi.l4+hl > pi.end {
			return
		}
		pi.hasPorts, pi.isTCP = true, true
		pi.sport = binary.BigEndian.Uint16(b[pi.l4:])
		pi.dport = binary.BigEndian.Uint16(b[pi.l4+2:])
		pi.tcpHdrLen = hl
		pi.tcpFlags = b[pi.l4+13]
		pi.payloadLen = pi.end - pi.l4 - hl
	case protoUDP:
		if pi.l4+8 > pi.end {
			return
		}
		pi.hasPorts = true
		pi.sport = binary.BigEndian.Uint16(b[pi.l4:])
		pi.dport = binary.BigEndian.Uint16(b[pi.l4+2:])
	}
}

// isSYNWithData reports a TCP segment with SYN set that carries payload:
// what a TFO client sends with a cookie, and what a TFO-hostile firewall drops.
func (pi *pktInfo) isSYNWithData() bool {
	return pi.isTCP && pi.tcpFlags&tcpFlagSYN != 0 && pi.payloadLen > 0
}

// flowKey identifies a transport flow in one direction (the 5-tuple). For
// packets without ports (ICMP, fragments) the ports are zero.
type flowKey struct {
	src, dst     [16]byte
	sport, dport uint16
	proto        uint8
	version      uint8
}

func (pi *pktInfo) flow() flowKey {
	return flowKey{src: pi.src, dst: pi.dst, sport: pi.sport, dport: pi.dport, proto: pi.proto, version: pi.version}
}

// stripTFO replaces every TCP Fast Open option (kind 34, and the old
// experimental kind 254 with magic 0xF989) in a SYN or SYN-ACK with NOPs and
// recomputes the TCP checksum. It reports whether b changed. The packet
// length never changes, so the IP header stays valid.
func stripTFO(b []byte, pi *pktInfo) bool {
	if !pi.isTCP || pi.tcpFlags&tcpFlagSYN == 0 {
		return false
	}
	changed := false
	i, end := pi.l4+20, pi.l4+pi.tcpHdrLen
	for i < end {
		kind := b[i]
		if kind == tcpOptEnd {
			break
		}
		if kind == tcpOptNOP {
			i++
			continue
		}
		if i+1 >= end {
			break
		}
		l := int(b[i+1])
		if l < 2 || i+l > end {
			break // malformed options: leave the rest alone
		}
		if kind == tcpOptFastOpen || (kind == tcpOptExp && l >= 4 && binary.BigEndian.Uint16(b[i+2:]) == tfoExpMagic) {
			for j := i; j < i+l; j++ {
				b[j] = tcpOptNOP
			}
			changed = true
		}
		i += l
	}
	if changed {
		setTCPChecksum(b, pi)
	}
	return changed
}

// setTCPChecksum recomputes the TCP checksum of b over the pseudo-header
// (RFC 793 for IPv4, RFC 8200 section 8.1 for IPv6) and the segment.
func setTCPChecksum(b []byte, pi *pktInfo) {
	seg := b[pi.l4:pi.end]
	seg[16], seg[17] = 0, 0
	var sum uint64
	if pi.version == 4 {
		sum = sumBytes(sum, pi.src[:4])
		sum = sumBytes(sum, pi.dst[:4])
	} else {
		sum = sumBytes(sum, pi.src[:])
		sum = sumBytes(sum, pi.dst[:])
	}
	sum += uint64(protoTCP) + uint64(len(seg))
	sum = sumBytes(sum, seg)
	binary.BigEndian.PutUint16(seg[16:], ^fold(sum))
}

// sumBytes adds b as big-endian 16-bit words to sum (odd length padded with
// a zero byte).
func sumBytes(sum uint64, b []byte) uint64 {
	for len(b) >= 8 {
		sum += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return sum
}

func fold(sum uint64) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// Segment is what a drop function (Direction.SetDropFunc) may want to know about a TCP packet.
type Segment struct {
	SrcPort, DstPort uint16
	Flags            uint8 // FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10
	Payload          int   // bytes of TCP payload
}

// SYN reports a connection's first segment (SYN without ACK).
func (s Segment) SYN() bool { return s.Flags&(tcpFlagSYN|tcpFlagACK) == tcpFlagSYN }

// ParseSegment reads the TCP header of an IPv4 or IPv6 packet; ok is false for anything else
// (another protocol, a later fragment, a malformed packet).
func ParseSegment(pkt []byte) (s Segment, ok bool) {
	pi, ok := parsePacket(pkt)
	if !ok || !pi.isTCP {
		return Segment{}, false
	}
	return Segment{SrcPort: pi.sport, DstPort: pi.dport, Flags: pi.tcpFlags, Payload: pi.payloadLen}, true
}
