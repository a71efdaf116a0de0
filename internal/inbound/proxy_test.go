package inbound

import (
	"bufio"
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

func TestReadSocks5UDPAssociate(t *testing.T) {
	in := []byte{5, 1, 0, 5, 3, 0, 1, 127, 0, 0, 1, 0x30, 0x39}
	var out bytes.Buffer
	req, err := ReadSocks5(bufio.NewReader(bytes.NewReader(in)), &out)
	if err != nil {
		t.Fatal(err)
	}
	if req.Cmd != CmdUDPAssociate || req.Dest != (trojan.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 12345}) {
		t.Fatalf("got %+v", req)
	}
	if !bytes.Equal(out.Bytes(), []byte{5, 0}) {
		t.Fatalf("wrote %x; the caller answers the request itself", out.Bytes())
	}
}

func TestSocks5UDPHeader(t *testing.T) {
	for _, a := range []trojan.Addr{
		{IP: netip.MustParseAddr("192.0.2.1"), Port: 53},
		{IP: netip.MustParseAddr("2001:db8::1"), Port: 443},
		{Domain: "example.com", Port: 8080},
	} {
		b, err := AppendSocks5UDP(nil, a, []byte("payload"))
		if err != nil {
			t.Fatal(err)
		}
		dst, p, err := ParseSocks5UDP(b)
		if err != nil || dst != a || string(p) != "payload" {
			t.Fatalf("%v: round trip gave %v %q %v", a, dst, p, err)
		}
	}
	for name, b := range map[string][]byte{
		"short":       {0, 0},
		"reserved":    {0, 1, 0, 1, 1, 2, 3, 4, 0, 53},
		"unknown typ": {0, 0, 0, 9, 1, 2, 3, 4, 0, 53},
		"cut address": {0, 0, 0, 1, 1, 2},
	} {
		if _, _, err := ParseSocks5UDP(b); err == nil {
			t.Errorf("%s: accepted %x", name, b)
		}
	}
	if _, _, err := ParseSocks5UDP([]byte{0, 0, 1, 1, 1, 2, 3, 4, 0, 53}); !errors.Is(err, ErrFragmented) {
		t.Errorf("fragment: %v", err)
	}
	if _, err := AppendSocks5UDP(nil, trojan.Addr{}, nil); err == nil {
		t.Error("AppendSocks5UDP accepted an empty address")
	}
}

func TestReadHTTPProxy(t *testing.T) {
	tests := []struct {
		name, in string
		dest     trojan.Addr
		connect  bool
		head     string // for non-CONNECT
		wantErr  string
	}{
		{name: "connect", in: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
			dest: trojan.Addr{Domain: "example.com", Port: 443}, connect: true},
		{name: "connect v6", in: "CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n",
			dest: trojan.Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 443}, connect: true},
		{name: "absolute uri", in: "GET http://example.com/a?b=c HTTP/1.1\r\nHost: example.com\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n",
			dest: trojan.Addr{Domain: "example.com", Port: 80},
			head: "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nConnection: close\r\n\r\n"},
		{name: "absolute uri, port, no host header, bare LF", in: "POST http://192.0.2.1:8080 HTTP/1.0\nContent-Length: 3\n\nabc",
			dest: trojan.Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 8080},
			head: "POST / HTTP/1.0\r\nHost: 192.0.2.1:8080\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"},
		{name: "connect without port", in: "CONNECT example.com HTTP/1.1\r\n\r\n", wantErr: "CONNECT"},
		{name: "relative uri", in: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", wantErr: "absolute http:// URI"},
		{name: "https uri", in: "GET https://x/ HTTP/1.1\r\n\r\n", wantErr: "absolute http:// URI"},
		{name: "http/2 preface", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", wantErr: "malformed request line"},
		{name: "bad header", in: "GET http://x/ HTTP/1.1\r\nno colon\r\n\r\n", wantErr: "malformed header"},
		{name: "cut short", in: "GET http://x/ HTTP/1.1\r\nHost: x\r\n", wantErr: "unexpected EOF"},
		{name: "huge", in: "GET http://x/ HTTP/1.1\r\nX: " + strings.Repeat("a", MaxHTTPHead) + "\r\n\r\n", wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.in), 512)
			req, err := ReadHTTPProxy(r)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.Dest != tt.dest || req.Connect != tt.connect || string(req.Head) != tt.head {
				t.Fatalf("got %+v %q", req, req.Head)
			}
			// Nothing past the head was consumed: a body stays for the relay.
			rest := new(bytes.Buffer)
			rest.ReadFrom(r)
			if _, after, _ := strings.Cut(strings.ReplaceAll(tt.in, "\r\n", "\n"), "\n\n"); rest.String() != after {
				t.Fatalf("left %q after the head, want %q", rest, after)
			}
		})
	}
}

func FuzzParseSocks5UDP(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 127, 0, 0, 1, 0, 53, 'q'})
	f.Add(append([]byte{0, 0, 0, 3, 11}, append([]byte("example.com"), 1, 187, 'x')...))
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80})
	f.Add([]byte{0, 0, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		dst, p, err := ParseSocks5UDP(b)
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes.
		again, err := AppendSocks5UDP(nil, dst, p)
		if err != nil {
			t.Fatalf("parsed %v but cannot encode it: %v", dst, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x, input %x", again, b)
		}
	})
}

func FuzzReadHTTPProxy(f *testing.F) {
	f.Add("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	f.Add("GET http://example.com/a?b=c HTTP/1.1\r\nHost: example.com\r\nProxy-Connection: keep-alive\r\n\r\nbody")
	f.Add("GET http://[::1]:8080/ HTTP/1.0\n\n")
	f.Add("GET / HTTP/1.1\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		r := bufio.NewReaderSize(strings.NewReader(in), 512)
		req, err := ReadHTTPProxy(r)
		if err != nil {
			return
		}
		if !req.Dest.IsValid() {
			t.Fatalf("accepted with an invalid destination %+v", req.Dest)
		}
		if req.Connect != (req.Head == nil) {
			t.Fatalf("Connect %v with head %q", req.Connect, req.Head)
		}
		if req.Connect {
			return
		}
		// The rewritten head is itself one well-formed request head ending the connection.
		head := string(req.Head)
		if !strings.HasSuffix(head, "Connection: close\r\n\r\n") || strings.Count(head, "\r\n\r\n") != 1 {
			t.Fatalf("rewritten head %q", head)
		}
		line, _, _ := strings.Cut(head, "\r\n")
		if f := strings.Split(line, " "); len(f) != 3 || !strings.HasPrefix(f[1], "/") {
			t.Fatalf("request line %q is not in origin form", line)
		}
	})
}
