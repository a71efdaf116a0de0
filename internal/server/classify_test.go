package server

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"

	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
)

func TestClassify(t *testing.T) {
	store := users.NewStatic([]string{"pw"})
	good, _ := trojan.AppendRequest(nil, trojan.Request{
		Hash: trojan.HashPassword("pw"), Cmd: trojan.CmdConnect,
		Dest: trojan.Addr{IP: netip.MustParseAddr("10.0.0.1"), Port: 443},
	})
	wrong, _ := trojan.AppendRequest(nil, trojan.Request{
		Hash: trojan.HashPassword("other"), Cmd: trojan.CmdConnect,
		Dest: trojan.Addr{Domain: "example.com", Port: 80},
	})
	for _, tc := range []struct {
		name   string
		in     []byte
		want   verdictKind
		reason string
	}{
		{"empty", nil, verdictMore, ""},
		{"hash prefix", good[:20], verdictMore, ""},
		{"known hash only", good[:trojan.HashLen], verdictMore, ""},
		{"known hash, CR", good[:trojan.HashLen+1], verdictMore, ""},
		{"all but last", good[:len(good)-1], verdictMore, ""},
		{"complete", good, verdictConnect, ""},
		{"complete with payload", append(bytes.Clone(good), "GET /"...), verdictConnect, ""},
		{"unknown hash decided at 56 bytes", wrong[:trojan.HashLen], verdictFallback, "unknown password"},
		{"unknown hash complete", wrong, verdictFallback, "unknown password"},
		{"HTTP", []byte("GET / HTTP/1.1\r\n"), verdictFallback, "malformed request"},
		{"upper-case hex", bytes.ToUpper(good[:10]), verdictFallback, "malformed request"},
		{"known hash, bad command", append(bytes.Clone(good[:trojan.HashLen+2]), 9), verdictFallback, "malformed request"},
	} {
		v := classify(tc.in, store)
		if v.kind != tc.want || v.reason != tc.reason {
			t.Errorf("%s: got kind %d reason %q, want %d %q", tc.name, v.kind, v.reason, tc.want, tc.reason)
		}
		if v.kind == verdictConnect && (v.hdrLen != len(good) || v.user.Name != "password #1" || v.req.Dest.Port != 443) {
			t.Errorf("%s: verdict %+v", tc.name, v)
		}
	}
}

// FuzzClassify feeds classify what a client might send, cut into reads at arbitrary points, the way
// the server does. Properties: the first final verdict does not depend on where the reads were cut
// (a header split across records still authenticates; a prober cannot tell the cuts apart), a final
// verdict never changes with more bytes, and only a header with a known hash connects.
func FuzzClassify(f *testing.F) {
	store := users.NewStatic([]string{"fuzz"})
	req := func(pw string, cmd trojan.Command, a trojan.Addr) []byte {
		b, err := trojan.AppendRequest(nil, trojan.Request{Hash: trojan.HashPassword(pw), Cmd: cmd, Dest: a})
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	v4 := trojan.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 80}
	v6 := trojan.Addr{IP: netip.MustParseAddr("::1"), Port: 443}
	dom := trojan.Addr{Domain: "example.com", Port: 8080}
	for _, seed := range [][]byte{
		req("fuzz", trojan.CmdConnect, v4),
		append(req("fuzz", trojan.CmdConnect, v6), "payload"...),
		req("fuzz", trojan.CmdUDPAssociate, dom),
		req("nope", trojan.CmdConnect, v4),
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0x16, 0x03, 0x01},
		{},
	} {
		f.Add(seed, uint16(1), uint16(57))
		f.Add(seed, uint16(56), uint16(60))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut1, cut2 uint16) {
		whole := classify(in, store)
		// Read in up to three pieces, stopping at the first final verdict as the server does.
		cuts := []int{min(int(cut1), len(in)), min(int(cut2), len(in)), len(in)}
		slices.Sort(cuts)
		var first verdict
		firstAt := -1
		for _, c := range cuts {
			v := classify(in[:c], store)
			if v.kind != verdictMore {
				first, firstAt = v, c
				break
			}
		}
		if firstAt < 0 {
			if whole.kind != verdictMore {
				t.Fatalf("no verdict at any cut but %d for all %d bytes", whole.kind, len(in))
			}
			return
		}
		if whole.kind != first.kind || whole.reason != first.reason {
			t.Fatalf("verdict after %d bytes %d/%q, for all %d bytes %d/%q", firstAt, first.kind, first.reason, len(in), whole.kind, whole.reason)
		}
		if first.kind != verdictConnect {
			return
		}
		if first.hdrLen != whole.hdrLen || first.req != whole.req || first.hdrLen > firstAt {
			t.Fatalf("header differs with the cuts: %d/%v vs %d/%v", first.hdrLen, first.req, whole.hdrLen, whole.req)
		}
		if _, ok := store.Lookup(trojan.Hash(in[:trojan.HashLen])); !ok || first.user.Hash != trojan.HashPassword("fuzz") {
			t.Fatal("connect verdict for an unknown hash")
		}
		if first.req.Hash != first.user.Hash {
			t.Fatal("request hash and user differ")
		}
	})
}
