package trojan_test

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

// requestVectors are hand-written headers: hash CRLF CMD ATYP ADDR PORT CRLF.
var requestVectors = []struct {
	name string
	r    trojan.Request
	wire string
}{
	{
		"connect ipv4",
		trojan.Request{Cmd: trojan.CmdConnect, Dest: trojan.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 443}},
		pwHex + "\r\n\x01\x01\x7f\x00\x00\x01\x01\xbb\r\n",
	},
	{
		"connect ipv6",
		trojan.Request{Cmd: trojan.CmdConnect, Dest: trojan.Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 80}},
		pwHex + "\r\n\x01\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x50\r\n",
	},
	{
		// What trojan-gfw's TrojanRequest::generate sends: always ATYP 0x03.
		"connect domain",
		trojan.Request{Cmd: trojan.CmdConnect, Dest: trojan.Addr{Domain: "example.com", Port: 443}},
		pwHex + "\r\n\x01\x03\x0bexample.com\x01\xbb\r\n",
	},
	{
		"udp associate",
		trojan.Request{Cmd: trojan.CmdUDPAssociate, Dest: trojan.Addr{IP: netip.IPv4Unspecified(), Port: 0}},
		pwHex + "\r\n\x03\x01\x00\x00\x00\x00\x00\x00\r\n",
	},
	{
		"longest",
		trojan.Request{Cmd: trojan.CmdConnect, Dest: trojan.Addr{Domain: strings.Repeat("z", 255), Port: 1}},
		pwHex + "\r\n\x01\x03\xff" + strings.Repeat("z", 255) + "\x00\x01\r\n",
	},
}

func init() {
	for i := range requestVectors {
		requestVectors[i].r.Hash = trojan.HashPassword("password")
	}
}

func TestRequestVectors(t *testing.T) {
	for _, v := range requestVectors {
		t.Run(v.name, func(t *testing.T) {
			got, err := trojan.AppendRequest([]byte("x"), v.r)
			if err != nil {
				t.Fatalf("AppendRequest: %v", err)
			}
			if string(got) != "x"+v.wire {
				t.Fatalf("AppendRequest = %q, want %q", got, "x"+v.wire)
			}
			payload := "GET / HTTP/1.1\r\n\r\n"
			r, n, err := trojan.ParseRequest([]byte(v.wire + payload))
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if r != v.r || n != len(v.wire) {
				t.Fatalf("ParseRequest = %#v, %d; want %#v, %d", r, n, v.r, len(v.wire))
			}
			if (v.name == "connect ipv4" && n != trojan.MinRequestLen) || (v.name == "longest" && n != trojan.MaxRequestLen) {
				t.Fatalf("header length %d, want MinRequestLen %d / MaxRequestLen %d", n, trojan.MinRequestLen, trojan.MaxRequestLen)
			}
			if n > trojan.MaxRequestLen || n < trojan.MinRequestLen {
				t.Fatalf("header length %d outside [MinRequestLen %d, MaxRequestLen %d]", n, trojan.MinRequestLen, trojan.MaxRequestLen)
			}
		})
	}
}

func TestParseRequestEveryPrefixIsShort(t *testing.T) {
	for _, v := range requestVectors {
		for i := range len(v.wire) {
			r, n, err := trojan.ParseRequest([]byte(v.wire[:i]))
			if err != trojan.ErrShort || n != 0 || r != (trojan.Request{}) {
				t.Fatalf("%s: ParseRequest(first %d of %d bytes) = %v, %d, %v; want ErrShort", v.name, i, len(v.wire), r, n, err)
			}
			if !trojan.HashPrefixValid([]byte(v.wire[:i])) {
				t.Fatalf("%s: HashPrefixValid(first %d bytes) = false", v.name, i)
			}
		}
	}
}

// structural lists, for a header, each position whose value is constrained and values that break it.
func structural(wire string) map[int][]byte {
	nonHex := []byte{'g', 'A', 'F', 'z', ' ', '\r', '\n', 0x00, 0x80, 0xff}
	m := map[int][]byte{}
	for i := range trojan.HashLen {
		m[i] = nonHex
	}
	m[56] = []byte{'\n', 'a', 0}
	m[57] = []byte{'\r', 'a', 0}
	var badCmd, badAtyp []byte
	for c := range 256 {
		if c != 1 && c != 3 && c != 0x7f {
			badCmd = append(badCmd, byte(c))
		}
		if c != 1 && c != 3 && c != 4 {
			badAtyp = append(badAtyp, byte(c))
		}
	}
	m[58] = badCmd
	m[59] = badAtyp
	if wire[59] == 0x03 {
		m[60] = []byte{0}
	}
	m[len(wire)-2] = []byte{'\n', 0, 'x'}
	m[len(wire)-1] = []byte{'\r', 0, 'x'}
	return m
}

func TestParseRequestFlippedStructuralByteIsInvalidEarly(t *testing.T) {
	for _, v := range requestVectors {
		for pos, bad := range structural(v.wire) {
			for _, c := range bad {
				b := []byte(v.wire + "payload")
				b[pos] = c
				if _, _, err := trojan.ParseRequest(b); !errors.Is(err, trojan.ErrInvalid) {
					t.Fatalf("%s: byte %d = 0x%02x: error %v, want ErrInvalid", v.name, pos, c, err)
				}
				// As early as possible: the broken byte is the last one received.
				if _, _, err := trojan.ParseRequest(b[:pos+1]); !errors.Is(err, trojan.ErrInvalid) {
					t.Fatalf("%s: first %d bytes with byte %d = 0x%02x: error %v, want ErrInvalid", v.name, pos+1, pos, c, err)
				}
				if pos < 58 && trojan.HashPrefixValid(b[:pos+1]) {
					t.Fatalf("%s: HashPrefixValid accepts byte %d = 0x%02x", v.name, pos, c)
				}
			}
		}
	}
}

func TestParseRequestFreeBytesStayValid(t *testing.T) {
	// Address and port bytes (not the domain length) may take any value.
	for _, v := range requestVectors {
		st := structural(v.wire)
		for pos := 60; pos < len(v.wire)-2; pos++ {
			if _, ok := st[pos]; ok {
				continue
			}
			for _, c := range []byte{0x00, '\r', '\n', 0xff} {
				b := []byte(v.wire)
				b[pos] = c
				if _, n, err := trojan.ParseRequest(b); err != nil || n != len(b) {
					t.Fatalf("%s: byte %d = 0x%02x: %d, %v; want a valid header", v.name, pos, c, n, err)
				}
			}
		}
	}
}

func TestParseRequestRejectsProbes(t *testing.T) {
	// What a prober or a browser sends first; each must be refused at once, not left waiting.
	for _, probe := range []string{
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"SSH-2.0-OpenSSH_9.6\r\n",
		strings.ToUpper(pwHex) + "\r\n\x01\x01\x7f\x00\x00\x01\x01\xbb\r\n",
		pwHex + "\n\x01\x01\x7f\x00\x00\x01\x01\xbb\r\n",
		pwHex[:55] + "\r\n\x01\x01\x7f\x00\x00\x01\x01\xbb\r\n",
	} {
		if _, _, err := trojan.ParseRequest([]byte(probe)); !errors.Is(err, trojan.ErrInvalid) {
			t.Errorf("ParseRequest(%q) error = %v, want ErrInvalid", probe, err)
		}
	}
}

func TestParseRequestErrorDoesNotLeakHash(t *testing.T) {
	b := []byte(pwHex + "\r\n\x09")
	_, _, err := trojan.ParseRequest(b)
	if !errors.Is(err, trojan.ErrInvalid) {
		t.Fatalf("error = %v, want ErrInvalid", err)
	}
	if strings.Contains(err.Error(), pwHex[:8]) {
		t.Fatalf("error %q contains hash bytes", err)
	}
}

func TestAppendRequestRejects(t *testing.T) {
	good := requestVectors[0].r
	for name, mutate := range map[string]func(*trojan.Request){
		"command 0":      func(r *trojan.Request) { r.Cmd = 0 },
		"command 0x7e":   func(r *trojan.Request) { r.Cmd = 0x7e },
		"zero hash":      func(r *trojan.Request) { r.Hash = trojan.Hash{} },
		"upper hash":     func(r *trojan.Request) { copy(r.Hash[:], strings.ToUpper(pwHex)) },
		"no destination": func(r *trojan.Request) { r.Dest = trojan.Addr{Port: 1} },
		"long domain":    func(r *trojan.Request) { r.Dest = trojan.Addr{Domain: strings.Repeat("a", 256)} },
	} {
		r := good
		mutate(&r)
		orig := []byte("keep")
		got, err := trojan.AppendRequest(orig, r)
		if !errors.Is(err, trojan.ErrInvalid) || !bytes.Equal(got, orig) {
			t.Errorf("%s: AppendRequest = %q, %v; want input unchanged and ErrInvalid", name, got, err)
		}
	}
}

func TestRequestRoundTrip(t *testing.T) {
	dests := []string{"10.1.2.3:1", "[::1]:65535", "[fd00::abcd]:22", "a.b:0", "xn--bcher-kva.example:443"}
	for i, d := range dests {
		for _, cmd := range []trojan.Command{trojan.CmdConnect, trojan.CmdUDPAssociate} {
			dest, err := trojan.ParseAddrString(d)
			if err != nil {
				t.Fatal(err)
			}
			want := trojan.Request{Hash: trojan.HashPassword(strings.Repeat("p", i)), Cmd: cmd, Dest: dest}
			b, err := trojan.AppendRequest(nil, want)
			if err != nil {
				t.Fatal(err)
			}
			got, n, err := trojan.ParseRequest(append(b, "tail"...))
			if err != nil || n != len(b) || got != want {
				t.Fatalf("round trip %v %s: got %#v, %d, %v", cmd, d, got, n, err)
			}
		}
	}
}

func TestZeroAllocsForIPDestinations(t *testing.T) {
	r := requestVectors[0].r
	buf := make([]byte, 0, trojan.MaxRequestLen)
	wire := []byte(requestVectors[1].wire)
	if a := testing.AllocsPerRun(100, func() {
		if _, err := trojan.AppendRequest(buf[:0], r); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("AppendRequest: %v allocations per call, want 0", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		if _, _, err := trojan.ParseRequest(wire); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("ParseRequest: %v allocations per call, want 0", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		if _, _, err := trojan.ParseRequest(wire[:70]); err != trojan.ErrShort {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("ParseRequest returning ErrShort: %v allocations per call, want 0", a)
	}
}
