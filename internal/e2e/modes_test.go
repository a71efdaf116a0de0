package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/inbound"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// These tests cover what a Trojan client is used for besides SOCKS5 CONNECT: UDP (both ways with
// trojan-gfw too), the HTTP proxy on the SOCKS5 port, and forward mode, all through the binary.

// curlPath returns curl's path or skips.
func curlPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("this test drives curl, which is not on PATH (Debian: apt-get install curl)")
	}
	return p
}

func TestHTTPProxyWithCurl(t *testing.T) {
	curl := curlPath(t)
	p := startPair(t)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "plain origin %s", r.URL.RequestURI())
	}))
	defer origin.Close()
	tlsOrigin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls origin %s", r.URL.RequestURI())
	}))
	defer tlsOrigin.Close()
	for _, c := range []struct{ url, want string }{
		{origin.URL + "/page?q=1", "plain origin /page?q=1"},
		{tlsOrigin.URL + "/secret", "tls origin /secret"}, // CONNECT
	} {
		cmd := exec.Command(curl, "-sS", "-k", "--max-time", "20", "-x", "http://"+p.socks, c.url)
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != c.want {
			t.Fatalf("curl -x http://%s %s: %v\n%s", p.socks, c.url, err, out)
		}
	}
}

// socksUDP is an application using a SOCKS5 UDP ASSOCIATE.
type socksUDP struct {
	ctl   net.Conn
	pc    *net.UDPConn
	relay netip.AddrPort
}

func socksAssociate(t testing.TB, proxy string) *socksUDP {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// Greeting and request in two steps: trojan-gfw refuses them coalesced.
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	method := make([]byte, 2)
	if _, err := io.ReadFull(c, method); err != nil || method[1] != 0 {
		t.Fatalf("socks5 method %x %v", method, err)
	}
	if _, err := c.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 4)
	if _, err := io.ReadFull(c, reply); err != nil || reply[1] != 0 {
		t.Fatalf("udp associate reply %x %v", reply, err)
	}
	alen := map[byte]int{1: 4 + 2, 4: 16 + 2}[reply[3]]
	if alen == 0 {
		t.Fatalf("udp associate reply with address type %d", reply[3])
	}
	rest := make([]byte, alen)
	if _, err := io.ReadFull(c, rest); err != nil {
		t.Fatal(err)
	}
	bound, _, err := trojan.ParseAddr(append([]byte{reply[3]}, rest...))
	if err != nil {
		t.Fatal(err)
	}
	if bound.IP.IsUnspecified() {
		bound.IP = netip.MustParseAddr("127.0.0.1")
	}
	_ = c.SetDeadline(time.Time{})
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &socksUDP{ctl: c, pc: pc, relay: netip.AddrPortFrom(bound.IP, bound.Port)}
}

func (s *socksUDP) exchange(t testing.TB, dst trojan.Addr, payload []byte) []byte {
	t.Helper()
	b, err := inbound.AppendSocks5UDP(nil, dst, payload)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pc.WriteToUDPAddrPort(b, s.relay); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	_ = s.pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := s.pc.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no UDP answer for %d bytes to %v: %v", len(payload), dst, err)
	}
	_, p, err := inbound.ParseSocks5UDP(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startUDPEcho echoes datagrams on 127.0.0.1.
func startUDPEcho(t testing.TB) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	go func() {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// checkUDPEcho sends datagrams of several sizes through a SOCKS5 UDP association, each to the echo
// origin, both as an IP and as a domain (IP literal), and checks each comes back unchanged. Sizes
// default to 1..8000 bytes, within what trojan-gfw frames (its whole frame, header included, must fit
// 8192 bytes); a peer with a smaller limit passes its own.
func checkUDPEcho(t *testing.T, socks string, sizes ...int) {
	t.Helper()
	if len(sizes) == 0 {
		sizes = []int{1, 100, 1400, 4000, 8000}
	}
	echo := startUDPEcho(t)
	app := socksAssociate(t, socks)
	for i, size := range sizes {
		dst := trojan.AddrFromAddrPort(echo)
		if i%2 == 1 {
			dst = trojan.Addr{Domain: echo.Addr().String(), Port: echo.Port()}
		}
		payload := bytes.Repeat([]byte{byte('a' + i)}, size)
		if got := app.exchange(t, dst, payload); !bytes.Equal(got, payload) {
			t.Fatalf("%d bytes to %v came back as %d bytes", size, dst, len(got))
		}
	}
}

func TestUDPThroughOurClientAndServer(t *testing.T) {
	p := startPair(t)
	checkUDPEcho(t, p.socks)
}

func TestInteropUDPOurClientTrojanGFWServer(t *testing.T) {
	trojanBin := trojanGFW(t)
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	sport, cport := freePort(t), freePort(t)
	gfw := start(t, trojanBin, "-c", writeJSON(t, dir, "gfw-server.json", serverConfig(sport, "127.0.0.1:1", "interop-pw", cert, key)))
	waitListening(t, gfw, fmt.Sprintf("127.0.0.1:%d", sport))
	ours := start(t, binary, "-c", writeJSON(t, dir, "client.json", clientConfig(cport, sport, "interop-pw", cert)))
	socks := fmt.Sprintf("127.0.0.1:%d", cport)
	waitListening(t, ours, socks)
	checkUDPEcho(t, socks)
}

func TestInteropUDPTrojanGFWClientOurServer(t *testing.T) {
	trojanBin := trojanGFW(t)
	dir := t.TempDir()
	cert, key := certFiles(t, dir)
	sport, cport := freePort(t), freePort(t)
	ours := start(t, binary, "-c", writeJSON(t, dir, "server.json", serverConfig(sport, "127.0.0.1:1", "interop-pw", cert, key)))
	waitListening(t, ours, fmt.Sprintf("127.0.0.1:%d", sport))
	gfw := start(t, trojanBin, "-c", writeJSON(t, dir, "gfw-client.json", clientConfig(cport, sport, "interop-pw", cert)))
	socks := fmt.Sprintf("127.0.0.1:%d", cport)
	waitListening(t, gfw, socks)
	checkUDPEcho(t, socks)
}

func TestForwardModeTCPAndUDP(t *testing.T) {
	p := startPair(t)
	dir := t.TempDir()
	_, sport, _ := net.SplitHostPort(p.serverAddr)
	var serverPort int
	fmt.Sscan(sport, &serverPort)

	tcpEcho := startEchoOrigin(t, "tcp", "127.0.0.1:0")
	udpEcho := startUDPEcho(t)
	for _, c := range []struct {
		name   string
		target string
	}{{"tcp", tcpEcho}, {"udp", udpEcho.String()}} {
		t.Run(c.name, func(t *testing.T) {
			host, tport, _ := net.SplitHostPort(c.target)
			var targetPort int
			fmt.Sscan(tport, &targetPort)
			fport := freePort(t)
			cfg := clientConfig(fport, serverPort, "s3cret", p.cert)
			cfg["run_type"], cfg["target_addr"], cfg["target_port"] = "forward", host, targetPort
			metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			cfg["fastrojan"] = map[string]any{"metrics_listen": metricsAddr}
			fwd := start(t, binary, "-c", writeJSON(t, dir, "forward-"+c.name+".json", cfg))
			addr := fmt.Sprintf("127.0.0.1:%d", fport)
			waitListening(t, fwd, addr)
			if c.name == "tcp" {
				conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				msg := bytes.Repeat([]byte("forwarded "), 1000)
				go conn.Write(msg)
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("tcp echo through forward: %v", err)
				}
				return
			}
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			to := netip.MustParseAddrPort(addr)
			for i, size := range []int{1, 1200, 8000} {
				msg := bytes.Repeat([]byte{byte('0' + i)}, size)
				pc.WriteToUDPAddrPort(msg, to)
				buf := make([]byte, 64<<10)
				pc.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, from, err := pc.ReadFromUDPAddrPort(buf)
				if err != nil || from != to || !bytes.Equal(buf[:n], msg) {
					t.Fatalf("udp echo through forward (%d bytes): got %d from %v, %v", size, n, from, err)
				}
			}
			// The client's metrics count the session and its datagrams.
			resp, err := http.Get("http://" + metricsAddr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, want := range []string{
				`fastrojan_udp_sessions_total{role="client"} 1`,
				`fastrojan_udp_datagrams_total{direction="up",role="client"} 3`,
				`fastrojan_udp_datagrams_total{direction="down",role="client"} 3`,
				`fastrojan_udp_bytes_total{direction="up",role="client"} 9201`,
			} {
				if !strings.Contains(string(body), want) {
					t.Errorf("metrics lack %s", want)
				}
			}
		})
	}
}
