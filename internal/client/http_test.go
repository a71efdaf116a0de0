package client

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/trojan"
)

func TestHTTPProxyAbsoluteURIAndConnect(t *testing.T) {
	env := startTunnel(t, nil)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin %s %s host=%s proxy-conn=%q", r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("Proxy-Connection"))
	}))
	defer origin.Close()

	// Absolute-URI request, as `curl -x http://...` sends for http:// URLs.
	c, err := net.Dial("tcp", env.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	host := origin.Listener.Addr().String()
	fmt.Fprintf(c, "GET http://%s/a/b?x=1 HTTP/1.1\r\nHost: %s\r\nProxy-Connection: keep-alive\r\n\r\n", host, host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	want := fmt.Sprintf(`origin GET /a/b?x=1 host=%s proxy-conn=""`, host)
	if resp.StatusCode != 200 || string(body) != want {
		t.Fatalf("got %d %q, want %q", resp.StatusCode, body, want)
	}

	// CONNECT, then HTTP inside the tunnel, through Go's own proxy support.

	cc, err := net.Dial("tcp", env.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(cc, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", host, host)
	br := bufio.NewReader(cc)
	resp, err = http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	fmt.Fprintf(cc, "GET /inside HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	if !strings.HasPrefix(string(body), "origin GET /inside") {
		t.Fatalf("inside CONNECT got %q", body)
	}

	// A malformed request gets a 400, not a tunnel.
	bc, err := net.Dial("tcp", env.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	bc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(bc, "GET /relative HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(bc), nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("relative URI: %v %v, want 400", resp, err)
	}
	if n := env.dials.Load(); n != 2 {
		t.Fatalf("%d dials through Outbound.Dial, want 2 (GET and CONNECT; none for the bad request)", n)
	}
}

func TestForwardTCPAndUDP(t *testing.T) {
	env := startTunnel(t, nil)
	// TCP: an echo origin behind the forward port.
	eln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer eln.Close()
	go func() {
		for {
			c, err := eln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	target, _ := trojan.ParseAddrString(eln.Addr().String())
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- env.client.ServeForward(fln, target) }()
	c, err := net.Dial("tcp", fln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("hello forward"))
	got := make([]byte, len("hello forward"))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello forward" {
		t.Fatalf("tcp forward echo %q %v", got, err)
	}

	// UDP: two local peers, each with its own session, each gets its own replies.
	echo, _ := udpEchoServer(t)
	upc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	udpServed := make(chan error, 1)
	go func() { udpServed <- env.client.ServeUDPForward(upc, trojan.AddrFromAddrPort(echo)) }()
	fwd := upc.LocalAddr().(*net.UDPAddr).AddrPort()
	for i, msg := range []string{"peer one", "peer two"} {
		p, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for range 3 {
			p.WriteToUDPAddrPort([]byte(msg), fwd)
			buf := make([]byte, 100)
			p.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := p.ReadFromUDPAddrPort(buf)
			if err != nil || from != fwd || string(buf[:n]) != msg {
				t.Fatalf("udp forward peer %d: %q from %v, %v", i, buf[:n], from, err)
			}
		}
	}
	// A datagram is counted after its write returns, which may be after its echo came back: wait a
	// moment for the counters to settle.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st := env.client.Stats().UDP
		if st.Sessions == 2 && st.DatagramsUp == 6 && st.DatagramsDown == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("UDP stats %+v", st)
		}
	}
	// Every Trojan connection, TCP or UDP, went through the outbound's dialer (TFO's hook).
	if n := env.dials.Load(); n != 3 {
		t.Fatalf("%d dials through Outbound.Dial, want 3 (one TCP tunnel, two UDP sessions)", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Close()
	if err := env.client.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("ServeForward: %v", err)
	}
	if err := <-udpServed; err != nil {
		t.Fatalf("ServeUDPForward: %v", err)
	}
}
