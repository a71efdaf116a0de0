package server

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xtaci/smux"

	"github.com/fastrojan/fastrojan/internal/mux"
	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
)

// trojanGoClient is trojan-go's client side built in the test from smux: a Trojan request with
// CMD 0x7f to "MUX_CONN":0 in the same write as smux's first frame (trojan-go's stickyConn), then
// smux streams, each opened with a SimpleSocks header.
func trojanGoClient(t *testing.T, addr, password string) *smux.Session {
	t.Helper()
	c, _ := dialTLS(t, addr)
	c.SetDeadline(time.Time{})
	hdr, err := trojan.AppendRequest(nil, trojan.Request{Hash: trojan.HashPassword(password), Cmd: 0x7f, Dest: trojan.Addr{Domain: "MUX_CONN"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := smux.DefaultConfig()
	cfg.KeepAliveDisabled = true // as trojan-go's client
	sess, err := smux.Client(&firstWriteHeader{Conn: c, hdr: hdr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

type firstWriteHeader struct {
	net.Conn
	mu  sync.Mutex
	hdr []byte
}

func (f *firstWriteHeader) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hdr != nil {
		hl := len(f.hdr)
		all := append(f.hdr, b...)
		f.hdr = nil
		n, err := f.Conn.Write(all)
		return max(0, n-hl), err
	}
	return f.Conn.Write(b)
}

// openSimpleSocks opens a stream for a CONNECT to dest carrying payload.
func openSimpleSocks(t *testing.T, sess *smux.Session, dest string, payload []byte) *smux.Stream {
	t.Helper()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	a, err := trojan.ParseAddrString(dest)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mux.AppendHeader(nil, trojan.CmdConnect, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(append(b, payload...)); err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(5 * time.Second))
	return st
}

func expectEcho(t *testing.T, st io.Reader, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(st, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("echo %q, %v; want %q", got, err, want)
	}
}

// A trojan-go client's mux session: several streams at once on one connection, each relayed to its
// own target; a stream with a bad SimpleSocks header ends alone; the per-session stream limit holds.
func TestMuxFromTrojanGoClient(t *testing.T) {
	ech := listenTarget(t, "tcp", "127.0.0.1:0", echo)
	var mu sync.Mutex
	var infos []ConnInfo
	srv := startServer(t, func(o *Options) {
		o.MaxMuxStreams = 3
		o.OnConn = func(ci ConnInfo) { mu.Lock(); infos = append(infos, ci); mu.Unlock() }
	})
	sess := trojanGoClient(t, srv.addr, testPassword)

	var streams []*smux.Stream
	for i := range 3 {
		msg := []byte{'m', byte('0' + i)}
		st := openSimpleSocks(t, sess, ech.Addr().String(), msg)
		expectEcho(t, st, msg)
		streams = append(streams, st)
	}
	// A fourth stream while three are open: closed by the server, the others unharmed.
	over, _ := sess.OpenStream()
	over.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := mux.AppendHeader(nil, trojan.CmdConnect, trojan.AddrFromAddrPort(netip.MustParseAddrPort(ech.Addr().String())))
	over.Write(append(b, "x"...))
	if n, err := over.Read(make([]byte, 1)); err == nil {
		t.Fatalf("stream over the limit read %d bytes", n)
	}
	// A bad header ends that stream only.
	streams[2].Close()
	time.Sleep(50 * time.Millisecond)
	bad, _ := sess.OpenStream()
	bad.SetDeadline(time.Now().Add(5 * time.Second))
	bad.Write([]byte{0x7f, 0x09, 1, 2, 3})
	if n, err := bad.Read(make([]byte, 1)); err == nil {
		t.Fatalf("stream with a bad header read %d bytes", n)
	}
	for i, st := range streams[:2] {
		msg := []byte{'a', byte('0' + i)}
		st.Write(msg)
		expectEcho(t, st, msg)
		st.Close()
	}
	sess.Close()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().MuxSessions != 1 || srv.Stats().Active != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", srv.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := srv.Stats()
	if st.MuxStreams != 3 || st.MuxBadStreams != 2 || st.Fallbacks != 0 {
		t.Fatalf("stats %+v: want 3 streams, 2 rejected (limit, bad header), no fallback", st)
	}
	mu.Lock()
	defer mu.Unlock()
	var streamsSeen, sessions int
	for _, ci := range infos {
		switch {
		case ci.MuxStream && ci.Outcome == outConnect && ci.Up > 0 && ci.Down > 0:
			streamsSeen++
		case !ci.MuxStream && ci.Outcome == outMux:
			sessions++
		}
	}
	if streamsSeen != 3 || sessions != 1 {
		t.Fatalf("OnConn saw %d streams and %d sessions: %+v", streamsSeen, sessions, infos)
	}
}

// A mux session from an unknown password never starts: the bytes go to the fallback site as any
// wrong password does.
func TestMuxUnknownUserGoesToFallback(t *testing.T) {
	fb := startFallback(t)
	srv := startServer(t, func(o *Options) { o.Fallback = fb.addr })
	c, _ := dialTLS(t, srv.addr)
	hdr, _ := trojan.AppendRequest(nil, trojan.Request{Hash: trojan.HashPassword("wrong"), Cmd: trojan.CmdMux, Dest: mux.Placeholder})
	c.Write(hdr)
	select {
	case <-fb.opened:
	case <-time.After(5 * time.Second):
		t.Fatal("an unknown user's mux request did not reach the fallback")
	}
	c.Close()
	if rec := fb.next(t); !bytes.Equal(rec.got, hdr) {
		t.Fatalf("fallback got %q", rec.got)
	}
	if st := srv.Stats(); st.MuxSessions != 0 {
		t.Fatalf("stats %+v: a mux session started", st)
	}
}

// A UDP ASSOCIATE stream of a trojan-go mux session carries Trojan UDP frames both ways.
func TestMuxUDPStream(t *testing.T) {
	port := udpEcho(t)
	srv := startServer(t, nil)
	sess := trojanGoClient(t, srv.addr, testPassword)
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(5 * time.Second))
	dst := trojan.Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: port}
	b, _ := mux.AppendHeader(nil, trojan.CmdUDPAssociate, dst)
	if _, err := st.Write(append(b, udpFrame(t, dst, []byte("datagram over mux"))...)); err != nil {
		t.Fatal(err)
	}
	from, p := readFrame(t, bufio.NewReader(st))
	if from != dst || string(p) != "datagram over mux" {
		t.Fatalf("got %v %q", from, p)
	}
}

// Every stream of a mux session counts towards its user's bytes, and a user over quota loses the
// whole session.
func TestMuxStreamsAreAccountedAndQuotaEndsSession(t *testing.T) {
	ech := listenTarget(t, "tcp", "127.0.0.1:0", echo)
	const quota = 60_000
	ledger, err := users.NewLedger(users.LedgerOptions{
		Backend: oneUserDB{users.Record{Hash: trojan.HashPassword(testPassword), Quota: quota}},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close(context.Background())
	srv := startServer(t, func(o *Options) { o.Users = ledger })
	sess := trojanGoClient(t, srv.addr, testPassword)
	chunk := bytes.Repeat([]byte("x"), 5000)
	for range 2 {
		st := openSimpleSocks(t, sess, ech.Addr().String(), chunk)
		expectEcho(t, st, chunk)
		st.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		totals := ledger.Totals()
		if len(totals) == 1 && totals[0].Up == 10_000 && totals[0].Down == 10_000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("totals %+v, want 10000 bytes each way from two streams", totals)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Past the quota the session's connection is closed: every stream ends.
	st := openSimpleSocks(t, sess, ech.Addr().String(), nil)
	st.SetDeadline(time.Now().Add(10 * time.Second))
	for range 20 {
		if _, err := st.Write(chunk); err != nil {
			break
		}
		if _, err := io.ReadFull(st, make([]byte, len(chunk))); err != nil {
			break
		}
	}
	// The server ended the connection: the ledger holds no open session and no stream works.
	deadline = time.Now().Add(10 * users.Tick)
	for ledger.Totals()[0].ActiveConns != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("mux session still open after the user went over quota (totals %+v)", ledger.Totals())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if again, err := sess.OpenStream(); err == nil {
		again.SetDeadline(time.Now().Add(2 * time.Second))
		b, _ := mux.AppendHeader(nil, trojan.CmdConnect, trojan.AddrFromAddrPort(netip.MustParseAddrPort(ech.Addr().String())))
		again.Write(append(b, "x"...))
		if _, err := again.Read(make([]byte, 1)); err == nil {
			t.Fatal("a stream still works after the user went over quota")
		}
	}
}
