package mux

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		cmd  trojan.Command
		dest trojan.Addr
	}{
		{trojan.CmdConnect, trojan.Addr{IP: netip.MustParseAddr("198.18.1.2"), Port: 80}},
		{trojan.CmdConnect, trojan.Addr{IP: netip.MustParseAddr("2001:2::1"), Port: 443}},
		{trojan.CmdUDPAssociate, trojan.Addr{Domain: "example.com", Port: 53}},
	} {
		b, err := AppendHeader(nil, tc.cmd, tc.dest)
		if err != nil {
			t.Fatal(err)
		}
		cmd, dest, err := ReadHeader(bytes.NewReader(append(b, "payload"...)))
		if err != nil || cmd != tc.cmd || dest != tc.dest {
			t.Fatalf("%v %v: read %v %v %v", tc.cmd, tc.dest, cmd, dest, err)
		}
		// Every proper prefix is short, never invalid.
		for i := range len(b) {
			if _, _, _, err := ParseHeader(b[:i]); !errors.Is(err, trojan.ErrShort) {
				t.Fatalf("prefix %d of %x: %v", i, b, err)
			}
		}
	}
	if _, err := AppendHeader(nil, trojan.CmdMux, Placeholder); err == nil {
		t.Fatal("a stream header with CMD 0x7f was encoded")
	}
	for _, bad := range [][]byte{{0x7f, 1}, {1, 9}, {1, 3, 0}} {
		if _, _, err := ReadHeader(bytes.NewReader(append(bad, make([]byte, 300)...))); !errors.Is(err, trojan.ErrInvalid) {
			t.Fatalf("%x: %v, want invalid", bad, err)
		}
	}
}

func FuzzReadHeader(f *testing.F) {
	b, _ := AppendHeader(nil, trojan.CmdConnect, trojan.Addr{Domain: "example.com", Port: 80})
	f.Add(b)
	f.Add([]byte{1, 1, 127, 0, 0, 1, 0, 80})
	f.Add([]byte{3, 4})
	f.Fuzz(func(t *testing.T, in []byte) {
		cmd, dest, err := ReadHeader(bytes.NewReader(in))
		pcmd, pdest, n, perr := ParseHeader(in)
		if err == nil {
			if perr != nil || pcmd != cmd || pdest != dest {
				t.Fatalf("ReadHeader ok (%v %v) but ParseHeader %v", cmd, dest, perr)
			}
			out, aerr := AppendHeader(nil, cmd, dest)
			if aerr != nil || !bytes.Equal(out, in[:n]) {
				t.Fatalf("re-encoding %x gives %x, %v", in[:n], out, aerr)
			}
		}
	})
}
