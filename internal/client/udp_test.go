package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/fastrojan/fastrojan/internal/inbound"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/server"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
	"github.com/fastrojan/fastrojan/internal/users"
)

// tunnelEnv is a real fastrojan server and a client in front of it, both on loopback.
type tunnelEnv struct {
	proxy  string
	client *Client
	server *server.Server
	dials  *atomic.Int64 // TCP connections to the server through Outbound.Dial (where TFO plugs in)
}

func startTunnel(t testing.TB, mod func(*Options)) *tunnelEnv {
	t.Helper()
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Users:     users.NewStatic([]string{"pw"}),
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sdone := make(chan error, 1)
	go func() { sdone <- srv.Serve(sln) }()
	t.Cleanup(func() { srv.Close(); <-sdone })

	var dials atomic.Int64
	opts := Options{Outbound: &outbound.Trojan{
		DialPlain: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		Server: sln.Addr().String(),
		TLS:    &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", CurvePreferences: []tls.CurveID{tls.X25519}},
		Hash:   trojan.HashPassword("pw"),
	}}
	if mod != nil {
		mod(&opts)
	}
	c, proxy := serveClient(t, opts)
	return &tunnelEnv{proxy: proxy, client: c, server: srv, dials: &dials}
}

// socksAssociate opens a SOCKS5 UDP ASSOCIATE and returns the control connection and relay address.
func socksAssociate(t testing.TB, proxy string) (net.Conn, netip.AddrPort) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(c, reply); err != nil || reply[3] != 0 || reply[2+1] != 0 {
		t.Fatalf("udp associate reply %x %v", reply, err)
	}
	a, _, err := trojan.ParseAddr(reply[2+3:])
	if err != nil || !a.IP.IsValid() || a.Port == 0 {
		t.Fatalf("udp associate bound address %x: %v", reply, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, netip.AddrPortFrom(a.IP, a.Port)
}

// udpApp is an application's UDP socket talking to a SOCKS5 relay.
type udpApp struct {
	t     testing.TB
	pc    *net.UDPConn
	relay netip.AddrPort
}

func newUDPApp(t testing.TB, relay netip.AddrPort) *udpApp {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &udpApp{t: t, pc: pc, relay: relay}
}

func (a *udpApp) send(dst trojan.Addr, payload []byte) {
	a.t.Helper()
	b, err := inbound.AppendSocks5UDP(nil, dst, payload)
	if err != nil {
		a.t.Fatal(err)
	}
	if _, err := a.pc.WriteToUDPAddrPort(b, a.relay); err != nil {
		a.t.Fatal(err)
	}
}

// recv returns the next datagram's source and payload, or an error after wait.
func (a *udpApp) recv(wait time.Duration) (trojan.Addr, []byte, error) {
	buf := make([]byte, 64<<10)
	_ = a.pc.SetReadDeadline(time.Now().Add(wait))
	n, from, err := a.pc.ReadFromUDPAddrPort(buf)
	if err != nil {
		return trojan.Addr{}, nil, err
	}
	if from != a.relay {
		return trojan.Addr{}, nil, errors.New("datagram not from the relay: " + from.String())
	}
	src, p, err := inbound.ParseSocks5UDP(buf[:n])
	return src, p, err
}

// udpEchoServer echoes datagrams and counts them.
func udpEchoServer(t testing.TB) (netip.AddrPort, *atomic.Int64) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			m, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			n.Add(1)
			_, _ = pc.WriteToUDPAddrPort(buf[:m], from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), &n
}

// dnsResponder answers every A query with 192.0.2.<len(name)>.
func dnsResponder(t testing.TB) netip.AddrPort {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
				dnsmessage.AResource{A: [4]byte{192, 0, 2, byte(len(q.Name.String()))}})
			msg, err := b.Finish()
			if err != nil {
				continue
			}
			_, _ = pc.WriteToUDPAddrPort(msg, from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestDNSOverSOCKS5UDPAssociate(t *testing.T) {
	env := startTunnel(t, nil)
	resolver := dnsResponder(t)
	_, relay := socksAssociate(t, env.proxy)
	app := newUDPApp(t, relay)

	name := dnsmessage.MustNewName("www.example.org.")
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x4242, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	query, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	// The resolver's address goes as a domain, as trojan-gfw clients send it.
	app.send(trojan.Addr{Domain: resolver.Addr().String(), Port: resolver.Port()}, query)
	src, answer, err := app.recv(5 * time.Second)
	if err != nil {
		t.Fatalf("no DNS answer through the tunnel: %v", err)
	}
	if src != trojan.AddrFromAddrPort(resolver) {
		t.Fatalf("answer from %v, want the resolver %v", src, resolver)
	}
	var p dnsmessage.Parser
	h, err := p.Start(answer)
	if err != nil || h.ID != 0x4242 || !h.Response {
		t.Fatalf("answer header %+v %v", h, err)
	}
	_ = p.SkipAllQuestions()
	rr, err := p.AnswerHeader()
	if err != nil || rr.Name != name {
		t.Fatalf("answer %v %v", rr, err)
	}
	a, err := p.AResource()
	if err != nil || a.A != [4]byte{192, 0, 2, byte(len("www.example.org."))} {
		t.Fatalf("A record %v %v", a, err)
	}
	st := env.client.Stats().UDP
	if st.Sessions != 1 || st.DatagramsUp != 1 || st.DatagramsDown != 1 {
		t.Fatalf("client UDP stats %+v", st)
	}
	if st := env.server.Stats().UDP; st.Associations != 1 || st.DatagramsUp != 1 || st.DatagramsDown != 1 {
		t.Fatalf("server UDP stats %+v", st)
	}
}

// TestTenThousandDatagramsIntactAndInOrder sends datagrams of every size from 1 to MaxUDPPayload
// (8192: our client and server frame the full payload whatever the address) through the tunnel to
// an echo server and checks each comes back byte for byte and in order. A window of datagrams in
// flight keeps the loopback UDP buffers from overflowing, so any loss is the tunnel's.
func TestTenThousandDatagramsIntactAndInOrder(t *testing.T) {
	env := startTunnel(t, nil)
	echo, _ := udpEchoServer(t)
	_, relay := socksAssociate(t, env.proxy)
	app := newUDPApp(t, relay)
	_ = app.pc.SetReadBuffer(4 << 20)
	dst := trojan.AddrFromAddrPort(echo)

	const count, window = 10000, 16
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := make([]int, count)
	for i := range sizes {
		switch i % 4 {
		case 0:
			sizes[i] = 1 + rng.IntN(64)
		case 1:
			sizes[i] = 1 + rng.IntN(trojan.MaxUDPPayload)
		case 2:
			sizes[i] = trojan.MaxUDPPayload - rng.IntN(16)
		default:
			sizes[i] = 1 + rng.IntN(1500)
		}
	}
	sizes[0], sizes[1] = 1, trojan.MaxUDPPayload
	payload := func(i int) []byte {
		b := make([]byte, sizes[i])
		rand.NewChaCha8([32]byte{byte(i), byte(i >> 8)}).Read(b)
		return b
	}
	sent := 0
	for ; sent < window; sent++ {
		app.send(dst, payload(sent))
	}
	for got := 0; got < count; got++ {
		src, p, err := app.recv(10 * time.Second)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", got, count, err)
		}
		if src != dst {
			t.Fatalf("datagram %d from %v", got, src)
		}
		if want := payload(got); !bytes.Equal(p, want) {
			t.Fatalf("datagram %d: got %d bytes, want %d (lost, reordered or corrupted)", got, len(p), len(want))
		}
		if sent < count {
			app.send(dst, payload(sent))
			sent++
		}
	}
	if st := env.client.Stats().UDP; st.Sessions != 1 || st.DatagramsUp != count || st.DatagramsDown != count || st.Dropped != 0 {
		t.Fatalf("client UDP stats %+v", st)
	}
}

func TestUDPAssociationRefusesStrangersAndEndsWithControlConnection(t *testing.T) {
	env := startTunnel(t, nil)
	echo, received := udpEchoServer(t)
	dst := trojan.AddrFromAddrPort(echo)
	ctl, relay := socksAssociate(t, env.proxy)
	app := newUDPApp(t, relay)
	app.send(dst, []byte("mine"))
	if _, p, err := app.recv(5 * time.Second); err != nil || string(p) != "mine" {
		t.Fatalf("echo %q %v", p, err)
	}
	// Another socket on the same host, another port: not the associating application.
	stranger := newUDPApp(t, relay)
	stranger.send(dst, []byte("not yours"))
	if _, p, err := stranger.recv(300 * time.Millisecond); err == nil {
		t.Fatalf("stranger got %q through someone else's association", p)
	}
	if n := received.Load(); n != 1 {
		t.Fatalf("echo server saw %d datagrams, want only the application's 1", n)
	}
	if st := env.client.Stats().UDP; st.Dropped != 1 {
		t.Fatalf("client UDP stats %+v, want the stranger's datagram dropped", st)
	}

	// Closing the control connection ends the association and its Trojan connection.
	ctl.Close()
	deadline := time.Now().Add(5 * time.Second)
	for (env.client.Stats().UDP.Active != 0 || env.server.Stats().UDP.Active != 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c, s := env.client.Stats().UDP, env.server.Stats().UDP; c.Active != 0 || s.Active != 0 {
		t.Fatalf("after the control connection closed: client %+v server %+v", c, s)
	}
	app.send(dst, []byte("too late"))
	if _, p, err := app.recv(300 * time.Millisecond); err == nil {
		t.Fatalf("got %q after the association ended", p)
	}
	if n := received.Load(); n != 1 {
		t.Fatalf("echo server saw %d datagrams after the association ended", n)
	}
}

func TestUDPSessionEndsAfterUDPTimeoutAndReopens(t *testing.T) {
	env := startTunnel(t, func(o *Options) { o.UDPTimeout = 200 * time.Millisecond })
	echo, _ := udpEchoServer(t)
	dst := trojan.AddrFromAddrPort(echo)
	_, relay := socksAssociate(t, env.proxy)
	app := newUDPApp(t, relay)
	app.send(dst, []byte("one"))
	if _, p, err := app.recv(5 * time.Second); err != nil || string(p) != "one" {
		t.Fatalf("echo %q %v", p, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for env.client.Stats().UDP.Active != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := env.client.Stats().UDP; st.Active != 0 {
		t.Fatalf("session still open after udp_timeout: %+v", st)
	}
	app.send(dst, []byte("two"))
	if _, p, err := app.recv(5 * time.Second); err != nil || string(p) != "two" {
		t.Fatalf("after the timeout: echo %q %v", p, err)
	}
	if st := env.client.Stats().UDP; st.Sessions != 2 {
		t.Fatalf("stats %+v, want a second session", st)
	}
}
