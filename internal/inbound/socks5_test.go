package inbound

import (
	"bufio"
	"bytes"
	"net/netip"
	"testing"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

func TestReadSocks5(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    trojan.Addr
		wantErr bool
		reply   []byte // what the server wrote
	}{
		{
			name:  "ipv4 connect",
			in:    []byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90},
			want:  trojan.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 8080},
			reply: []byte{5, 0},
		},
		{
			name:  "domain connect, two methods offered",
			in:    append([]byte{5, 2, 2, 0, 5, 1, 0, 3, 11}, append([]byte("example.com"), 1, 187)...),
			want:  trojan.Addr{Domain: "example.com", Port: 443},
			reply: []byte{5, 0},
		},
		{
			name:  "ipv6 connect",
			in:    append(append([]byte{5, 1, 0, 5, 1, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 0, 80),
			want:  trojan.Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 80},
			reply: []byte{5, 0},
		},
		{name: "socks4", in: []byte{4, 1, 0, 80, 1, 2, 3, 4, 0}, wantErr: true},
		{name: "only username/password offered", in: []byte{5, 1, 2}, wantErr: true, reply: []byte{5, 0xff}},
		{name: "bind refused", in: []byte{5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80}, wantErr: true,
			reply: []byte{5, 0, 5, RepCommandNotSupported, 0, 1, 0, 0, 0, 0, 0, 0}},
		{name: "bad atyp", in: []byte{5, 1, 0, 5, 1, 0, 9, 1, 2}, wantErr: true,
			reply: []byte{5, 0, 5, RepAddrNotSupported, 0, 1, 0, 0, 0, 0, 0, 0}},
		{name: "truncated", in: []byte{5, 1, 0, 5, 1, 0, 1, 127}, wantErr: true, reply: []byte{5, 0, 5, RepAddrNotSupported, 0, 1, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			req, err := ReadSocks5(bufio.NewReader(bytes.NewReader(tt.in)), &out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && (req.Dest != tt.want || req.Cmd != CmdConnect) {
				t.Fatalf("got %+v, want %+v", req.Dest, tt.want)
			}
			if !bytes.Equal(out.Bytes(), tt.reply) {
				t.Fatalf("wrote %x, want %x", out.Bytes(), tt.reply)
			}
		})
	}
}

func TestReadSocks5LeavesPayloadBuffered(t *testing.T) {
	in := []byte{5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 1, 0, 80, 'G', 'E', 'T'}
	br := bufio.NewReader(bytes.NewReader(in))
	if _, err := ReadSocks5(br, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	rest := make([]byte, 3)
	if n, _ := br.Read(rest); string(rest[:n]) != "GET" {
		t.Fatalf("bytes after the request were lost: %q", rest[:n])
	}
}

func TestWriteSocks5Reply(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSocks5Reply(&b, RepSucceeded, netip.MustParseAddrPort("[::1]:1080")); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{5, 0, 0, 4}, netip.IPv6Loopback().AsSlice()...), 0x04, 0x38)
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("got %x want %x", b.Bytes(), want)
	}
}

func FuzzReadSocks5(f *testing.F) {
	f.Add([]byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90})
	f.Add(append([]byte{5, 1, 0, 5, 1, 0, 3, 3}, "a.b"...))
	f.Add([]byte{5, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		req, err := ReadSocks5(bufio.NewReader(bytes.NewReader(in)), &out)
		if err != nil {
			return
		}
		// A request we accept re-encodes to the address bytes we were given.
		enc, eerr := req.Dest.AppendTo(nil)
		if eerr != nil {
			t.Fatalf("accepted %+v that cannot be encoded: %v", req.Dest, eerr)
		}
		if !bytes.Contains(in, enc) {
			t.Fatalf("accepted address %x not in input %x", enc, in)
		}
	})
}
