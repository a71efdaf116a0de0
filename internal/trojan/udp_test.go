package trojan_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// udpVectors are hand-written frames: ATYP ADDR PORT LENGTH CRLF PAYLOAD.
var udpVectors = []struct {
	name    string
	dst     trojan.Addr
	payload string
	wire    string
}{
	{"ipv4 dns", trojan.Addr{IP: netip.MustParseAddr("8.8.8.8"), Port: 53}, "\x12\x34query",
		"\x01\x08\x08\x08\x08\x00\x35\x00\x07\r\n\x12\x34query"},
	{"ipv6", trojan.Addr{IP: netip.MustParseAddr("2001:4860:4860::8888"), Port: 443}, "quic",
		"\x04\x20\x01\x48\x60\x48\x60\x00\x00\x00\x00\x00\x00\x00\x00\x88\x88\x01\xbb\x00\x04\r\nquic"},
	{"domain", trojan.Addr{Domain: "dns.google", Port: 53}, "x",
		"\x03\x0adns.google\x00\x35\x00\x01\r\nx"},
	{"empty payload", trojan.Addr{IP: netip.MustParseAddr("10.0.0.1"), Port: 9}, "",
		"\x01\x0a\x00\x00\x01\x00\x09\x00\x00\r\n"},
	{"largest payload", trojan.Addr{IP: netip.MustParseAddr("10.0.0.2"), Port: 9}, strings.Repeat("L", trojan.MaxUDPPayload),
		"\x01\x0a\x00\x00\x02\x00\x09\x20\x00\r\n" + strings.Repeat("L", trojan.MaxUDPPayload)},
}

func TestUDPFrameVectors(t *testing.T) {
	for _, v := range udpVectors {
		t.Run(v.name, func(t *testing.T) {
			got, err := trojan.AppendUDPFrame([]byte("x"), v.dst, []byte(v.payload))
			if err != nil {
				t.Fatalf("AppendUDPFrame: %v", err)
			}
			if string(got) != "x"+v.wire {
				t.Fatalf("AppendUDPFrame = %q, want %q", got, "x"+v.wire)
			}
			if l := trojan.UDPFrameLen(v.dst, len(v.payload)); l != len(v.wire) {
				t.Fatalf("UDPFrameLen = %d, want %d", l, len(v.wire))
			}
			b := []byte(v.wire + "\x01next")
			dst, p, n, err := trojan.ParseUDPFrame(b)
			if err != nil || dst != v.dst || string(p) != v.payload || n != len(v.wire) {
				t.Fatalf("ParseUDPFrame = %#v, %d-byte payload, %d, %v", dst, len(p), n, err)
			}
			if len(p) > 0 && &p[0] != &b[n-len(p)] {
				t.Fatal("payload does not alias the input")
			}
			if cap(p) != len(p) {
				t.Fatalf("payload capacity %d reaches past the frame (len %d)", cap(p), len(p))
			}
		})
	}
}

func TestParseUDPFrameEveryPrefixIsShort(t *testing.T) {
	for _, v := range udpVectors {
		w := []byte(v.wire)
		for i := range len(w) {
			if _, _, n, err := trojan.ParseUDPFrame(w[:i]); err != trojan.ErrShort || n != 0 {
				t.Fatalf("%s: ParseUDPFrame(first %d of %d bytes) = %d, %v; want ErrShort", v.name, i, len(v.wire), n, err)
			}
		}
	}
}

func TestParseUDPFrameInvalidEarly(t *testing.T) {
	for _, v := range udpVectors {
		_, an, err := trojan.ParseAddr([]byte(v.wire))
		if err != nil {
			t.Fatal(err)
		}
		flips := map[int][]byte{
			0:      {0x00, 0x02, 0x05, 0xff},
			an + 2: {'\n', 0, 'x'},
			an + 3: {'\r', 0, 'x'},
		}
		if v.wire[0] == 0x03 {
			flips[1] = []byte{0}
		}
		for pos, bad := range flips {
			for _, c := range bad {
				b := []byte(v.wire)
				b[pos] = c
				for _, in := range [][]byte{b, b[:pos+1]} {
					if _, _, _, err := trojan.ParseUDPFrame(in); !errors.Is(err, trojan.ErrInvalid) {
						t.Fatalf("%s: byte %d = 0x%02x, %d bytes: error %v, want ErrInvalid", v.name, pos, c, len(in), err)
					}
				}
			}
		}
		// A LENGTH above the limit is refused as soon as both its bytes are in.
		for _, l := range []uint16{trojan.MaxUDPPayload + 1, 0xffff} {
			b := []byte(v.wire[:an] + string([]byte{byte(l >> 8), byte(l)}))
			if _, _, _, err := trojan.ParseUDPFrame(b); !errors.Is(err, trojan.ErrInvalid) {
				t.Fatalf("%s: LENGTH %d: error %v, want ErrInvalid", v.name, l, err)
			}
		}
	}
}

func TestAppendUDPFrameRejects(t *testing.T) {
	dst := trojan.Addr{IP: netip.MustParseAddr("1.1.1.1"), Port: 53}
	orig := []byte("keep")
	for name, tc := range map[string]struct {
		dst trojan.Addr
		n   int
	}{
		"too long":   {dst, trojan.MaxUDPPayload + 1},
		"no address": {trojan.Addr{Port: 53}, 1},
	} {
		got, err := trojan.AppendUDPFrame(orig, tc.dst, make([]byte, tc.n))
		if !errors.Is(err, trojan.ErrInvalid) || !bytes.Equal(got, orig) {
			t.Errorf("%s: AppendUDPFrame = %d bytes, %v; want input unchanged and ErrInvalid", name, len(got), err)
		}
	}
}

func udpStream(t *testing.T) []byte {
	t.Helper()
	var s []byte
	for _, v := range udpVectors {
		s = append(s, v.wire...)
	}
	return s
}

func TestReadUDPFrameStream(t *testing.T) {
	stream := udpStream(t)
	readers := map[string]func() io.Reader{
		"bytes":    func() io.Reader { return bytes.NewReader(stream) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"bufio":    func() io.Reader { return bufio.NewReader(iotest.HalfReader(bytes.NewReader(stream))) },
	}
	for name, mk := range readers {
		r := mk()
		buf := make([]byte, trojan.MaxUDPPayload)
		for _, v := range udpVectors {
			dst, p, err := trojan.ReadUDPFrame(r, buf)
			if err != nil || dst != v.dst || string(p) != v.payload {
				t.Fatalf("%s: %s: ReadUDPFrame = %#v, %d bytes, %v", name, v.name, dst, len(p), err)
			}
		}
		if _, _, err := trojan.ReadUDPFrame(r, buf); err != io.EOF {
			t.Fatalf("%s: at the end of the stream: error %v, want io.EOF", name, err)
		}
	}
}

func TestReadUDPFrameTruncated(t *testing.T) {
	buf := make([]byte, trojan.MaxUDPPayload)
	for _, v := range udpVectors {
		w := []byte(v.wire)
		for i := 1; i < len(w); i++ {
			_, _, err := trojan.ReadUDPFrame(bytes.NewReader(w[:i]), buf)
			if err != io.ErrUnexpectedEOF {
				t.Fatalf("%s: stream cut after %d of %d bytes: error %v, want io.ErrUnexpectedEOF", v.name, i, len(v.wire), err)
			}
		}
	}
}

func TestReadUDPFrameInvalid(t *testing.T) {
	big := make([]byte, trojan.MaxUDPPayload)
	hdr := "\x01\x01\x02\x03\x04\x00\x35"
	tests := map[string]struct {
		in  string
		buf []byte
	}{
		"atyp":                 {"\x05" + hdr[1:] + "\x00\x01\r\nx", big},
		"zero-length domain":   {"\x03\x00\x00\x35\x00\x01\r\nx", big},
		"missing CR":           {hdr + "\x00\x01\n\nx", big},
		"missing LF":           {hdr + "\x00\x01\r\rx", big},
		"length over limit":    {hdr + "\x20\x01\r\n", big}, // no payload follows: refused before reading it
		"length 65535":         {hdr + "\xff\xff\r\n", make([]byte, 70000)},
		"length over len(buf)": {hdr + "\x01\x2d\r\n" + strings.Repeat("p", 301), make([]byte, 300)},
	}
	for name, tt := range tests {
		_, _, err := trojan.ReadUDPFrame(bytes.NewReader([]byte(tt.in)), tt.buf)
		if !errors.Is(err, trojan.ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
	if _, _, err := trojan.ReadUDPFrame(bytes.NewReader([]byte(udpVectors[0].wire)), make([]byte, trojan.MaxUDPHeaderLen-1)); err != io.ErrShortBuffer {
		t.Errorf("tiny buffer: error %v, want io.ErrShortBuffer", err)
	}
	// A buffer of exactly MaxUDPHeaderLen carries the longest header and a payload that fits.
	long := trojan.Addr{Domain: strings.Repeat("h", 255), Port: 7}
	frame, err := trojan.AppendUDPFrame(nil, long, []byte("ok"))
	if err != nil {
		t.Fatal(err)
	}
	dst, p, err := trojan.ReadUDPFrame(bytes.NewReader(frame), make([]byte, trojan.MaxUDPHeaderLen))
	if err != nil || dst != long || string(p) != "ok" {
		t.Errorf("longest header in a MaxUDPHeaderLen buffer: %v, %q, %v", dst, p, err)
	}
}

func TestReadUDPFrameNoAllocs(t *testing.T) {
	frame := []byte(udpVectors[1].wire) // IPv6
	r := bytes.NewReader(frame)
	buf := make([]byte, trojan.MaxUDPPayload)
	a := testing.AllocsPerRun(100, func() {
		r.Reset(frame)
		if _, _, err := trojan.ReadUDPFrame(r, buf); err != nil {
			t.Fatal(err)
		}
	})
	if a != 0 {
		t.Errorf("ReadUDPFrame: %v allocations per frame, want 0", a)
	}
	out := make([]byte, 0, 64)
	dst, p := udpVectors[0].dst, []byte(udpVectors[0].payload)
	if a := testing.AllocsPerRun(100, func() { _, _ = trojan.AppendUDPFrame(out[:0], dst, p) }); a != 0 {
		t.Errorf("AppendUDPFrame: %v allocations per frame, want 0", a)
	}
}
