package tcpmetrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastrojan/fastrojan/internal/netlab"
)

// TestMain removes lab namespaces that a killed earlier run left behind (netlab's doc asks for it).
func TestMain(m *testing.M) {
	_, _ = netlab.SweepStale()
	os.Exit(m.Run())
}

// setTCP returns a socket Control func that sets one IPPROTO_TCP option.
func setTCP(opt, v int) func(string, string, syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, opt, v)
		})
		return errors.Join(err, serr)
	}
}

// TestDumpShowsLearnedCookie: before any connection the client host's cache has no cookie for the
// server; after one TFO connection it holds the cookie and the server's MSS.
func TestDumpShowsLearnedCookie(t *testing.T) {
	p := netlab.NewPath(t, netlab.PathOptions{RTT: 2 * time.Millisecond})
	server := p.ServerAddr.V4
	lc := net.ListenConfig{Control: setTCP(unix.TCP_FASTOPEN, 16)}
	lc.SetMultipathTCP(false)
	var ln net.Listener
	if err := p.Server.Do(func() (err error) {
		ln, err = lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(server, 7000).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(c, c)
			c.Close()
		}
	}()

	var before []Entry
	if err := p.Client.Do(func() (err error) { before, err = Dump(); return err }); err != nil {
		t.Fatal(err)
	}
	if e, ok := find(before, server); ok && e.HasCookie() {
		t.Fatalf("cookie cached before any connection: %+v", e)
	}

	d := net.Dialer{Timeout: 5 * time.Second, Control: setTCP(unix.TCP_FASTOPEN_CONNECT, 1)}
	var c net.Conn
	if err := p.Client.Do(func() (err error) {
		c, err = d.Dial("tcp", netip.AddrPortFrom(server, 7000).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.Close()

	var after []Entry
	if err := p.Client.Do(func() (err error) { after, err = Dump(); return err }); err != nil {
		t.Fatal(err)
	}
	e, ok := find(after, server)
	if !ok || !e.HasCookie() {
		t.Fatalf("no cookie for %s in the client's cache after a TFO connection: %+v", server, after)
	}
	if len(e.Cookie) < 4 || e.FastOpenMSS == 0 {
		t.Errorf("entry %+v: want a cookie of 4..16 bytes and the server's MSS", e)
	}
	if e.SYNDrops != 0 {
		t.Errorf("entry %+v: SYN drops on a clean path", e)
	}
}

func find(es []Entry, dst netip.Addr) (Entry, bool) {
	for _, e := range es {
		if e.Dst == dst {
			return e, true
		}
	}
	return Entry{}, false
}

func TestParseMessage(t *testing.T) {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(attrAddrIPv4, []byte{198, 18, 0, 2})
	ae.Bytes(attrSaddrIPv4, []byte{198, 18, 0, 1})
	ae.Uint64(attrAge, 1500)
	ae.Uint16(attrFopenMSS, 1460)
	ae.Uint16(attrFopenDrops, 2)
	ae.Uint64(attrFopenDropTS, 30000)
	ae.Bytes(attrFopenCookie, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	e, err := parseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{Dst: netip.MustParseAddr("198.18.0.2"), Src: netip.MustParseAddr("198.18.0.1"), Age: 1500 * time.Millisecond,
		FastOpenMSS: 1460, SYNDrops: 2, SYNDropAge: 30 * time.Second}
	if e.Dst != want.Dst || e.Src != want.Src || e.Age != want.Age || e.FastOpenMSS != want.FastOpenMSS ||
		e.SYNDrops != want.SYNDrops || e.SYNDropAge != want.SYNDropAge || string(e.Cookie) != "\x01\x02\x03\x04\x05\x06\x07\x08" {
		t.Fatalf("got %+v", e)
	}

	bad := netlink.NewAttributeEncoder()
	bad.Bytes(attrAddrIPv4, []byte{1, 2, 3})
	b, _ = bad.Encode()
	if _, err := parseMessage(b); !errors.Is(err, ErrInvalid) {
		t.Fatalf("3-byte IPv4 address: %v, want ErrInvalid", err)
	}
	none := netlink.NewAttributeEncoder()
	none.Uint16(attrFopenMSS, 1)
	b, _ = none.Encode()
	if _, err := parseMessage(b); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no destination: %v, want ErrInvalid", err)
	}
}

func FuzzParseMessage(f *testing.F) {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(attrAddrIPv6, netip.MustParseAddr("2001:2::1").AsSlice())
	ae.Bytes(attrFopenCookie, []byte{9, 9, 9, 9})
	b, _ := ae.Encode()
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseMessage(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if !e.Dst.IsValid() || len(e.Cookie) > maxCookieLen {
			t.Fatalf("accepted %+v", e)
		}
	})
}
