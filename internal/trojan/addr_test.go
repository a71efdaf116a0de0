package trojan_test

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

func TestParseAddrString(t *testing.T) {
	tests := []struct {
		in   string
		want trojan.Addr
	}{
		{"1.2.3.4:80", trojan.Addr{IP: netip.MustParseAddr("1.2.3.4"), Port: 80}},
		{"[::1]:443", trojan.Addr{IP: netip.IPv6Loopback(), Port: 443}},
		{"[::ffff:10.0.0.1]:53", trojan.Addr{IP: netip.MustParseAddr("10.0.0.1"), Port: 53}},
		{"[2001:db8::1]:0", trojan.Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 0}},
		{"example.com:443", trojan.Addr{Domain: "example.com", Port: 443}},
		{"localhost:65535", trojan.Addr{Domain: "localhost", Port: 65535}},
		{strings.Repeat("a", 255) + ":1", trojan.Addr{Domain: strings.Repeat("a", 255), Port: 1}},
	}
	for _, tt := range tests {
		got, err := trojan.ParseAddrString(tt.in)
		if err != nil {
			t.Errorf("ParseAddrString(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseAddrString(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
	for _, in := range []string{
		"", "1.2.3.4", "example.com", ":80", "[::1]", "1.2.3.4:65536", "1.2.3.4:-1", "1.2.3.4:http",
		"[fe80::1%eth0]:80", strings.Repeat("a", 256) + ":1", "::1:80",
	} {
		if a, err := trojan.ParseAddrString(in); !errors.Is(err, trojan.ErrInvalid) {
			t.Errorf("ParseAddrString(%q) = %#v, %v; want ErrInvalid", in, a, err)
		}
	}
}

func TestAddrString(t *testing.T) {
	for _, s := range []string{"1.2.3.4:80", "[::1]:443", "example.com:443", "[2001:db8::1]:0"} {
		a, err := trojan.ParseAddrString(s)
		if err != nil {
			t.Fatal(err)
		}
		if a.String() != s {
			t.Errorf("String() = %q, want %q", a.String(), s)
		}
	}
}

// addrVectors are hand-written encodings, as trojan-gfw's SOCKS5Address produces them.
var addrVectors = []struct {
	name string
	a    trojan.Addr
	wire string
}{
	{"ipv4", trojan.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 443}, "\x01\x7f\x00\x00\x01\x01\xbb"},
	{"ipv4 zero", trojan.Addr{IP: netip.IPv4Unspecified(), Port: 0}, "\x01\x00\x00\x00\x00\x00\x00"},
	{"ipv6", trojan.Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 8080},
		"\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1f\x90"},
	{"ipv4-mapped ipv6 stays ipv6", trojan.Addr{IP: netip.MustParseAddr("::ffff:1.2.3.4"), Port: 1},
		"\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x01\x02\x03\x04\x00\x01"},
	{"domain", trojan.Addr{Domain: "example.com", Port: 443}, "\x03\x0bexample.com\x01\xbb"},
	{"ip literal as domain (trojan-gfw client)", trojan.Addr{Domain: "1.2.3.4", Port: 53}, "\x03\x071.2.3.4\x00\x35"},
	{"one-byte domain", trojan.Addr{Domain: "a", Port: 65535}, "\x03\x01a\xff\xff"},
	{"255-byte domain", trojan.Addr{Domain: strings.Repeat("d", 255), Port: 80}, "\x03\xff" + strings.Repeat("d", 255) + "\x00\x50"},
}

func TestAddrVectors(t *testing.T) {
	for _, v := range addrVectors {
		t.Run(v.name, func(t *testing.T) {
			got, err := v.a.AppendTo([]byte("prefix"))
			if err != nil {
				t.Fatalf("AppendTo: %v", err)
			}
			if want := "prefix" + v.wire; string(got) != want {
				t.Fatalf("AppendTo = %x, want %x", got, want)
			}
			if n := v.a.EncodedLen(); n != len(v.wire) {
				t.Fatalf("EncodedLen = %d, want %d", n, len(v.wire))
			}
			a, n, err := trojan.ParseAddr([]byte(v.wire + "trailing"))
			if err != nil || n != len(v.wire) || a != v.a {
				t.Fatalf("ParseAddr = %#v, %d, %v; want %#v, %d, nil", a, n, err, v.a, len(v.wire))
			}
			for i := range len(v.wire) {
				if _, n, err := trojan.ParseAddr([]byte(v.wire[:i])); err != trojan.ErrShort || n != 0 {
					t.Fatalf("ParseAddr(prefix of %d bytes) = %d, %v; want ErrShort", i, n, err)
				}
			}
		})
	}
}

func TestParseAddrInvalid(t *testing.T) {
	for atyp := range 256 {
		if atyp == 1 || atyp == 3 || atyp == 4 {
			continue
		}
		// Invalid from the first byte on, whatever follows.
		for _, b := range [][]byte{{byte(atyp)}, append([]byte{byte(atyp)}, make([]byte, 300)...)} {
			if _, _, err := trojan.ParseAddr(b); !errors.Is(err, trojan.ErrInvalid) {
				t.Fatalf("ParseAddr(atyp 0x%02x, %d bytes) error = %v, want ErrInvalid", atyp, len(b), err)
			}
		}
	}
	for _, b := range []string{"\x03\x00", "\x03\x00\x00\x50"} {
		if _, _, err := trojan.ParseAddr([]byte(b)); !errors.Is(err, trojan.ErrInvalid) {
			t.Errorf("ParseAddr(%x) error = %v, want ErrInvalid (zero-length domain)", b, err)
		}
	}
}

func TestAddrAppendToRejects(t *testing.T) {
	for name, a := range map[string]trojan.Addr{
		"zero":       {},
		"both":       {IP: netip.MustParseAddr("1.2.3.4"), Domain: "example.com"},
		"long":       {Domain: strings.Repeat("a", 256)},
		"zone":       {IP: netip.MustParseAddr("fe80::1%eth0")},
		"port only":  {Port: 80},
		"empty name": {Domain: ""},
	} {
		orig := []byte("keep")
		got, err := a.AppendTo(orig)
		if !errors.Is(err, trojan.ErrInvalid) {
			t.Errorf("%s: AppendTo error = %v, want ErrInvalid", name, err)
		}
		if !bytes.Equal(got, orig) || a.IsValid() {
			t.Errorf("%s: AppendTo returned %q (IsValid %v), want the input unchanged", name, got, a.IsValid())
		}
	}
}

func TestCanonicalAndAddrPort(t *testing.T) {
	for in, want := range map[trojan.Addr]trojan.Addr{
		{Domain: "1.2.3.4", Port: 1}:        {IP: netip.MustParseAddr("1.2.3.4"), Port: 1},
		{Domain: "::ffff:1.2.3.4", Port: 2}: {IP: netip.MustParseAddr("1.2.3.4"), Port: 2},
		{Domain: "2001:db8::2", Port: 3}:    {IP: netip.MustParseAddr("2001:db8::2"), Port: 3},
		{Domain: "example.com", Port: 4}:    {Domain: "example.com", Port: 4},
		{Domain: "fe80::1%eth0", Port: 5}:   {Domain: "fe80::1%eth0", Port: 5},
	} {
		if got := in.Canonical(); got != want {
			t.Errorf("%#v.Canonical() = %#v, want %#v", in, got, want)
		}
	}
	a := trojan.AddrFromAddrPort(netip.MustParseAddrPort("[::ffff:192.0.2.7]:5353"))
	if want := (trojan.Addr{IP: netip.MustParseAddr("192.0.2.7"), Port: 5353}); a != want {
		t.Errorf("AddrFromAddrPort = %#v, want %#v", a, want)
	}
	if b, _ := a.AppendTo(nil); b[0] != 0x01 {
		t.Errorf("unmapped UDP peer encodes with ATYP 0x%02x, want 0x01", b[0])
	}
}
