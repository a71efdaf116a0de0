package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
)

// udpEcho answers every datagram on a dual-stack loopback-reachable socket with the same bytes; a
// datagram starting with "big:" is answered with a 9000-byte datagram first (too large to frame).
func udpEcho(t testing.TB) uint16 {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if bytes.HasPrefix(buf[:n], []byte("big:")) {
				_, _ = pc.WriteToUDPAddrPort(make([]byte, 9000), from)
			}
			_, _ = pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

func udpFrame(t testing.TB, dst trojan.Addr, payload []byte) []byte {
	t.Helper()
	b, err := trojan.AppendUDPFrame(nil, dst, payload)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// associate opens a UDP ASSOCIATE whose first frame goes to dst, right after the header.
func associate(t testing.TB, addr string, dst trojan.Addr, payload []byte) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	tc, _ := dialTLS(t, addr)
	msg := append(header(t, testPassword, trojan.CmdUDPAssociate, dst.String()), udpFrame(t, dst, payload)...)
	if _, err := tc.Write(msg); err != nil {
		t.Fatal(err)
	}
	return tc, bufio.NewReader(tc)
}

func readFrame(t testing.TB, r *bufio.Reader) (trojan.Addr, []byte) {
	t.Helper()
	buf := make([]byte, trojan.MaxUDPHeaderLen+trojan.MaxUDPPayload)
	dst, p, err := trojan.ReadUDPFrame(r, buf)
	if err != nil {
		t.Fatalf("read UDP frame: %v", err)
	}
	return dst, append([]byte(nil), p...)
}

func TestUDPAssociateRelaysToIPv4IPv6AndDomains(t *testing.T) {
	port := udpEcho(t)
	s := startServer(t, nil)
	v4 := trojan.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: port}
	tc, r := associate(t, s.addr, v4, []byte("first, in the header's record"))
	src, p := readFrame(t, r)
	if src != v4 || string(p) != "first, in the header's record" {
		t.Fatalf("got %v %q", src, p)
	}
	cases := []struct {
		dst     trojan.Addr
		wantSrc trojan.Addr
	}{
		{trojan.Addr{IP: netip.MustParseAddr("::1"), Port: port}, trojan.Addr{IP: netip.MustParseAddr("::1"), Port: port}},
		// trojan-gfw clients send IP literals as domains.
		{trojan.Addr{Domain: "127.0.0.1", Port: port}, v4},
		{trojan.Addr{Domain: "localhost", Port: port}, trojan.Addr{}}, // either loopback
		{trojan.Addr{Domain: "localhost", Port: port}, trojan.Addr{}}, // from the cache
	}
	for i, c := range cases {
		payload := bytes.Repeat([]byte{byte(i)}, 100*(i+1))
		if _, err := tc.Write(udpFrame(t, c.dst, payload)); err != nil {
			t.Fatal(err)
		}
		src, p := readFrame(t, r)
		if !bytes.Equal(p, payload) {
			t.Fatalf("%v: payload of %d bytes came back as %d bytes", c.dst, len(payload), len(p))
		}
		if c.wantSrc.IsValid() && src != c.wantSrc {
			t.Fatalf("%v: reply from %v, want %v", c.dst, src, c.wantSrc)
		}
		if !src.IP.IsLoopback() || src.Port != port {
			t.Fatalf("%v: reply from %v", c.dst, src)
		}
	}
	// The largest payload goes through in both directions.
	big := bytes.Repeat([]byte("x"), trojan.MaxUDPPayload)
	if _, err := tc.Write(udpFrame(t, v4, big)); err != nil {
		t.Fatal(err)
	}
	if _, p := readFrame(t, r); !bytes.Equal(p, big) {
		t.Fatalf("max payload came back as %d bytes", len(p))
	}
	// A datagram too large to frame is dropped; the association goes on.
	if _, err := tc.Write(udpFrame(t, v4, []byte("big:after"))); err != nil {
		t.Fatal(err)
	}
	if _, p := readFrame(t, r); string(p) != "big:after" {
		t.Fatalf("after an oversized datagram got %d bytes", len(p))
	}
	st := s.Stats().UDP
	if st.Associations != 1 || st.Active != 1 || st.DatagramsUp != 7 || st.DatagramsDown != 7 || st.Dropped != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestUDPFrameThatLiesIsRejected(t *testing.T) {
	port := udpEcho(t)
	s := startServer(t, nil)
	v4 := trojan.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: port}
	for _, bad := range [][]byte{
		// LENGTH 8193: above the limit.
		{1, 127, 0, 0, 1, byte(port >> 8), byte(port), 0x20, 0x01, '\r', '\n'},
		// LENGTH not followed by CRLF.
		{1, 127, 0, 0, 1, byte(port >> 8), byte(port), 0, 1, 'x', 'x', 'x'},
		// Unknown address type.
		{9, 0, 0, 0},
	} {
		tc, r := associate(t, s.addr, v4, []byte("ok"))
		if _, p := readFrame(t, r); string(p) != "ok" {
			t.Fatalf("got %q", p)
		}
		if _, err := tc.Write(bad); err != nil {
			t.Fatal(err)
		}
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("after a malformed frame %x: read %v, want the server to close", bad, err)
		}
	}
	if st := s.Stats().UDP; st.BadFrames != 3 {
		t.Fatalf("BadFrames = %d, want 3", st.BadFrames)
	}
}

func TestUDPAssociationEndsAfterUDPTimeout(t *testing.T) {
	port := udpEcho(t)
	const timeout = 300 * time.Millisecond
	s := startServer(t, func(o *Options) { o.UDPTimeout = timeout })
	v4 := trojan.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: port}
	tc, r := associate(t, s.addr, v4, []byte("one"))
	readFrame(t, r)
	// Traffic keeps it alive past the timeout.
	for range 4 {
		time.Sleep(timeout / 2)
		tc.Write(udpFrame(t, v4, []byte("again")))
		readFrame(t, r)
	}
	start := time.Now()
	tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle association: read %v, want EOF", err)
	}
	if d := time.Since(start); d < timeout*8/10 || d > timeout+3*time.Second {
		t.Fatalf("closed %v after the last datagram, udp_timeout %v", d, timeout)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().UDP.Active != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats().UDP; st.Active != 0 || st.Associations != 1 {
		t.Fatalf("stats after timeout %+v", st)
	}
}

// FuzzServerUDPUpstream feeds arbitrary client bytes to the server's frame loop: it must never panic,
// must stop at the first malformed frame, and must send exactly the frames ParseUDPFrame accepts
// before that (domains other than IP literals fail to resolve here and are dropped).
func FuzzServerUDPUpstream(f *testing.F) {
	v4 := trojan.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 53}
	seed, _ := trojan.AppendUDPFrame(nil, v4, []byte("hello"))
	seed, _ = trojan.AppendUDPFrame(seed, trojan.Addr{Domain: "::1", Port: 9}, nil)
	seed, _ = trojan.AppendUDPFrame(seed, trojan.Addr{Domain: "example.com", Port: 9}, []byte("x"))
	f.Add(seed)
	f.Add(append(bytes.Clone(seed), 1, 1, 2, 3, 4, 0, 1, 0x20, 0x01, '\r', '\n'))
	f.Add([]byte{3, 0, 0, 0})
	f.Add([]byte{4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80, 0, 2, '\r', '\n', 'h', 'i'})
	noDNS := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS in this test")
	}}
	srv, err := New(Options{TLSConfig: &tls.Config{}, Users: testStore(), Resolver: noDNS, DialTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := 0
		for rest := b; ; {
			dst, _, n, err := trojan.ParseUDPFrame(rest)
			if err != nil {
				break
			}
			rest = rest[n:]
			if c := dst.Canonical(); c.IP.IsValid() && c.Port != 0 {
				want++
			}
		}
		sent := 0
		a := &udpAssoc{s: srv, dns: map[string]dnsEntry{}, timeout: time.Minute,
			send: func(p []byte, to netip.AddrPort) (int, error) {
				if len(p) > trojan.MaxUDPPayload || !to.IsValid() {
					t.Fatalf("send of %d bytes to %v", len(p), to)
				}
				sent++
				return len(p), nil
			}}
		_ = a.upstream(bufio.NewReader(bytes.NewReader(b)))
		if sent != want {
			t.Fatalf("sent %d datagrams, ParseUDPFrame finds %d sendable frames", sent, want)
		}
	})
}

// oneUserDB is a users table with one user, for accounting tests.
type oneUserDB struct{ rec users.Record }

func (d oneUserDB) Users(context.Context) ([]users.Record, error) { return []users.Record{d.rec}, nil }
func (oneUserDB) Apply(context.Context, users.Batch) error        { return nil }
func (oneUserDB) Close() error                                    { return nil }

// TestUDPBytesAreAccountedAndQuotaEndsAssociation: UDP payload bytes count towards the user's
// upload and download, and a user who goes over quota loses the association.
func TestUDPBytesAreAccountedAndQuotaEndsAssociation(t *testing.T) {
	port := udpEcho(t)
	const quota = 50_000
	ledger, err := users.NewLedger(users.LedgerOptions{
		Backend: oneUserDB{users.Record{Hash: trojan.HashPassword(testPassword), Quota: quota}},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close(context.Background())
	s := startServer(t, func(o *Options) { o.Users = ledger })
	v4 := trojan.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: port}
	tc, r := associate(t, s.addr, v4, make([]byte, 1000))
	readFrame(t, r)
	for range 9 {
		tc.Write(udpFrame(t, v4, make([]byte, 1000)))
		readFrame(t, r)
	}
	totals := ledger.Totals()
	if len(totals) != 1 || totals[0].Up != 10_000 || totals[0].Down != 10_000 {
		t.Fatalf("totals %+v, want 10000 bytes each way", totals)
	}
	// Past the quota, the association is closed within a few ledger ticks.
	buf := make([]byte, trojan.MaxUDPHeaderLen+trojan.MaxUDPPayload)
	for range 40 {
		tc.Write(udpFrame(t, v4, make([]byte, 1000)))
		if _, _, err := trojan.ReadUDPFrame(r, buf); err != nil {
			break // cut already
		}
	}
	tc.SetReadDeadline(time.Now().Add(10 * users.Tick))
	for {
		if _, err := r.ReadByte(); err != nil {
			if isTimeout(err) {
				t.Fatal("association still open after the user went over quota")
			}
			break
		}
	}
}
