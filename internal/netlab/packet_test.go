package netlab

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// tcpPacket builds an IPv4 or IPv6 TCP segment with a valid checksum.
func tcpPacket(v6 bool, sport, dport uint16, flags uint8, opts, payload []byte) []byte {
	for len(opts)%4 != 0 {
		opts = append(opts, tcpOptEnd)
	}
	tcp := make([]byte, 20+len(opts)+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	tcp[12] = byte((20+len(opts))/4) << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	copy(tcp[20:], opts)
	copy(tcp[20+len(opts):], payload)
	var ip []byte
	if v6 {
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
		ip[6], ip[7] = protoTCP, 64
		copy(ip[8:], []byte{0x20, 0x01, 0, 2, 15: 1})
		copy(ip[24:], []byte{0x20, 0x01, 0, 2, 15: 2})
	} else {
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		ip[8], ip[9] = 64, protoTCP
		copy(ip[12:], []byte{198, 18, 0, 1})
		copy(ip[16:], []byte{198, 18, 0, 2})
		binary.BigEndian.PutUint16(ip[10:], ^fold(sumBytes(0, ip)))
	}
	pkt := append(ip, tcp...)
	pi, ok := parsePacket(pkt)
	if !ok {
		panic("tcpPacket built an unparsable packet")
	}
	setTCPChecksum(pkt, &pi)
	return pkt
}

var tfoOption = []byte{tcpOptFastOpen, 10, 1, 2, 3, 4, 5, 6, 7, 8} // a cookie

// hasOption walks the TCP options of p (independently of stripTFO).
func hasOption(p []byte, pi *pktInfo, kind byte) bool {
	opts := p[pi.l4+20 : pi.l4+pi.tcpHdrLen]
	for i := 0; i < len(opts); {
		switch opts[i] {
		case tcpOptEnd:
			return false
		case tcpOptNOP:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return false // malformed: a receiver stops here too
		}
		if opts[i] == kind {
			return true
		}
		i += int(opts[i+1])
	}
	return false
}

// checksumOK verifies the TCP checksum the way a receiver does: the one's
// complement sum over pseudo-header and segment, checksum included, is 0xffff.
func checksumOK(p []byte, pi *pktInfo) bool {
	var pseudo []byte
	seg := p[pi.l4:pi.end]
	if pi.version == 4 {
		pseudo = append(append(pseudo, pi.src[:4]...), pi.dst[:4]...)
		pseudo = append(pseudo, 0, protoTCP, byte(len(seg)>>8), byte(len(seg)))
	} else {
		pseudo = append(append(pseudo, pi.src[:]...), pi.dst[:]...)
		pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(seg)))
		pseudo = append(pseudo, 0, 0, 0, protoTCP)
	}
	var s uint32
	all := append(pseudo, seg...)
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	for i := 0; i < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return s == 0xffff
}

func TestParsePacket(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		p := tcpPacket(v6, 40000, 443, tcpFlagSYN, tfoOption, []byte("hello"))
		pi, ok := parsePacket(p)
		if !ok || !pi.isTCP || pi.sport != 40000 || pi.dport != 443 || pi.payloadLen != 5 || pi.tcpHdrLen != 32 {
			t.Errorf("v6=%v: parse %+v ok=%v", v6, pi, ok)
		}
		if !pi.isSYNWithData() {
			t.Errorf("v6=%v: SYN with 5 bytes not recognised", v6)
		}
		if !checksumOK(p, &pi) {
			t.Errorf("v6=%v: builder made a bad checksum", v6)
		}
		// Trailing bytes beyond the IP length (padding) are not payload.
		pi2, ok := parsePacket(append(bytes.Clone(p), 0, 0, 0))
		if !ok || pi2.payloadLen != 5 {
			t.Errorf("v6=%v: padding counted as payload: %+v", v6, pi2)
		}
		// Truncated packets are refused, not misread.
		if _, ok := parsePacket(p[:len(p)-1]); ok {
			t.Errorf("v6=%v: truncated packet accepted", v6)
		}
	}
	bare := tcpPacket(false, 1, 2, tcpFlagSYN, nil, nil)
	if pi, _ := parsePacket(bare); pi.isSYNWithData() {
		t.Error("bare SYN taken for SYN with data")
	}
	// An IPv6 hop-by-hop header before TCP is skipped.
	p := tcpPacket(true, 1, 2, tcpFlagSYN|tcpFlagACK, nil, []byte("x"))
	hbh := []byte{protoTCP, 0, 1, 4, 0, 0, 0, 0} // next=TCP, len 8, PadN
	withExt := append(append(bytes.Clone(p[:40]), hbh...), p[40:]...)
	withExt[6] = 0
	binary.BigEndian.PutUint16(withExt[4:], uint16(len(withExt)-40))
	if pi, ok := parsePacket(withExt); !ok || !pi.isTCP || pi.l4 != 48 || pi.payloadLen != 1 {
		t.Errorf("IPv6 with hop-by-hop: %+v ok=%v", pi, ok)
	}
	// A later IPv4 fragment has no transport header.
	frag := bytes.Clone(bare)
	binary.BigEndian.PutUint16(frag[6:], 100)
	if pi, ok := parsePacket(frag); !ok || pi.isTCP || pi.hasPorts {
		t.Errorf("IPv4 later fragment parsed as TCP: %+v", pi)
	}
}

func TestStripTFOKeepsOtherOptions(t *testing.T) {
	opts := []byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}
	opts = append(opts, tfoOption...)
	opts = append(opts, tcpOptExp, 4, 0xF9, 0x89) // experimental TFO, cookie request
	p := tcpPacket(false, 1, 2, tcpFlagSYN, opts, []byte("data"))
	orig := bytes.Clone(p)
	pi, _ := parsePacket(p)
	if !stripTFO(p, &pi) {
		t.Fatal("nothing stripped")
	}
	if hasOption(p, &pi, tcpOptFastOpen) || hasOption(p, &pi, tcpOptExp) {
		t.Error("a TFO option survived")
	}
	for _, k := range []byte{2, 4, 8, 3} {
		if !hasOption(p, &pi, k) {
			t.Errorf("option %d lost", k)
		}
	}
	if !checksumOK(p, &pi) {
		t.Error("checksum wrong after strip")
	}
	if !bytes.Equal(p[:pi.l4], orig[:pi.l4]) || !bytes.Equal(p[pi.end-4:], orig[pi.end-4:]) {
		t.Error("IP header or payload changed")
	}
	// A non-SYN segment is never touched.
	ack := tcpPacket(false, 1, 2, tcpFlagACK, tfoOption, nil)
	pi, _ = parsePacket(ack)
	if stripTFO(ack, &pi) {
		t.Error("stripped an option from a non-SYN segment")
	}
}

func TestLinkAddrs(t *testing.T) {
	a, b := linkAddrs(0)
	if a.V4.String() != "198.18.0.1" || b.V4.String() != "198.18.0.2" || a.V6.String() != "2001:2::1" || b.V6.String() != "2001:2::2" {
		t.Errorf("link 0: %v %v", a, b)
	}
	a, b = linkAddrs(maxLinks - 1)
	if a.V4.String() != "198.19.255.1" || b.V6.String() != "2001:2:0:1ff::2" {
		t.Errorf("last link: %v %v", a, b)
	}
}

func TestParseNetstat(t *testing.T) {
	raw := []byte("TcpExt: SyncookiesSent TCPFastOpenActive TCPFastOpenCookieReqd\nTcpExt: 0 7 3\nIpExt: InNoRoutes\nIpExt: 1\n")
	m, err := parseNetstat(raw, "TcpExt")
	if err != nil || m["TCPFastOpenActive"] != 7 || m["TCPFastOpenCookieReqd"] != 3 || len(m) != 3 {
		t.Errorf("TcpExt = %v, %v", m, err)
	}
	if m, err := parseNetstat(raw, "IpExt"); err != nil || m["InNoRoutes"] != 1 {
		t.Errorf("IpExt = %v, %v", m, err)
	}
	for _, bad := range []string{"", "TcpExt: A B\nTcpExt: 1\n", "TcpExt: A\nTcpExt: x\n", "TcpExt: A\n"} {
		if _, err := parseNetstat([]byte(bad), "TcpExt"); err == nil {
			t.Errorf("parseNetstat(%q) succeeded", bad)
		}
	}
}

// FuzzPacket feeds arbitrary bytes to the forwarder's packet code: parsing
// must not panic or read out of bounds, stripping keeps the length and
// yields a valid checksum without option 34, and the flow key is stable.
func FuzzPacket(f *testing.F) {
	f.Add(tcpPacket(false, 1, 2, tcpFlagSYN, tfoOption, []byte("hello")))
	f.Add(tcpPacket(true, 1, 2, tcpFlagSYN|tcpFlagACK, append([]byte{2, 4, 5, 0xb4}, tfoOption...), nil))
	f.Add(tcpPacket(false, 1, 2, tcpFlagSYN, []byte{tcpOptExp, 4, 0xF9, 0x89}, nil))
	f.Add(tcpPacket(true, 1, 2, tcpFlagACK, nil, []byte("x")))
	f.Add([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2})
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 0, 64, 15: 1, 31: 2, 39: 0, 40: 6, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		pi, ok := parsePacket(b)
		if !ok {
			return
		}
		if pi.end > len(b) || pi.l4 > pi.end || (pi.isTCP && pi.l4+pi.tcpHdrLen > pi.end) {
			t.Fatalf("offsets out of range: %+v len %d", pi, len(b))
		}
		//lint:ignore SA4000 two calls must give the same key
		if pi.flow() != pi.flow() {
			t.Fatal("flow key unstable")
		}
		_ = pi.isSYNWithData()
		c := bytes.Clone(b)
		if stripTFO(c, &pi) {
			if len(c) != len(b) || !bytes.Equal(c[:pi.l4], b[:pi.l4]) {
				t.Fatal("strip changed the length or the IP header")
			}
			if pi2, ok := parsePacket(c); !ok || pi2.tcpHdrLen != pi.tcpHdrLen || pi2.payloadLen != pi.payloadLen {
				t.Fatal("stripped packet parses differently")
			}
			if !checksumOK(c, &pi) {
				t.Fatal("bad checksum after strip")
			}
			if hasOption(c, &pi, tcpOptFastOpen) {
				t.Fatal("option 34 survived the strip")
			}
		}
	})
}

// FuzzParseNetstat: malformed /proc/net/netstat text gives an error, never a panic.
func FuzzParseNetstat(f *testing.F) {
	f.Add([]byte("TcpExt: A B\nTcpExt: 1 2\n"))
	f.Add([]byte("TcpExt: A\nTcpExt: 18446744073709551616\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseNetstat(b, "TcpExt")
		if err == nil && m == nil {
			t.Fatal("nil map without error")
		}
	})
}

func TestParseSegment(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		s, ok := ParseSegment(tcpPacket(v6, 40000, 443, tcpFlagSYN, tfoOption, []byte("hello")))
		if !ok || s != (Segment{SrcPort: 40000, DstPort: 443, Flags: tcpFlagSYN, Payload: 5}) || !s.SYN() {
			t.Errorf("v6=%v: SYN with data read as %+v ok=%v", v6, s, ok)
		}
		if s, _ := ParseSegment(tcpPacket(v6, 443, 40000, tcpFlagSYN|tcpFlagACK, nil, nil)); s.SYN() {
			t.Errorf("v6=%v: SYN-ACK taken for a connection's first segment", v6)
		}
	}
	if _, ok := ParseSegment([]byte{0x45, 0}); ok {
		t.Error("truncated packet read as a segment")
	}
}
