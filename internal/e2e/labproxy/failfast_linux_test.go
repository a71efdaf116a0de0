package labproxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

func trojanVia(h *netlab.Host, server string, timeout time.Duration) *outbound.Trojan {
	return &outbound.Trojan{
		Server:           server,
		TLS:              &tls.Config{ServerName: "localhost", InsecureSkipVerify: true, CurvePreferences: tlsconf.FastOpenCurves},
		Hash:             trojan.HashPassword("x"),
		HandshakeTimeout: timeout,
		DialTFO:          tfoDial(h).DialContext,
	}
}

// With TFO the connect returns before anything is sent, so a refused server shows during the TLS
// handshake; the client still fails at once and says the connect failed.
func TestTrojanRefusedFailsFast(t *testing.T) {
	h := host(t, 3)
	cacheCookie(t, h) // the connect itself now returns at once
	addr := closedPort(t, h)
	start := time.Now()
	_, err := trojanVia(h, addr, 5*time.Second).Handshake(context.Background())
	took := time.Since(start)
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "connect to trojan server "+addr) {
		t.Fatalf("err = %v; want a connect error naming the server, wrapping connection refused", err)
	}
	if took > time.Second {
		t.Errorf("refusal took %v; want well under the 5s handshake timeout", took)
	}
}

// A server with no route fails at once too.
func TestTrojanUnreachableFailsFast(t *testing.T) {
	h := host(t, 3) // loopback only: no route anywhere else
	start := time.Now()
	_, err := trojanVia(h, "192.0.2.1:443", 5*time.Second).Handshake(context.Background())
	if !errors.Is(err, syscall.ENETUNREACH) || !strings.Contains(err.Error(), "192.0.2.1:443") {
		t.Fatalf("err = %v; want network unreachable naming the server", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("unreachable took %v", took)
	}
}

// When the path goes silent after a cookie was cached, nothing fails the connect: the handshake
// deadline is what ends the attempt, and the error says so.
func TestTrojanBlackholeBoundedByHandshakeTimeout(t *testing.T) {
	p := netlab.NewPath(t, netlab.PathOptions{RTT: 10 * time.Millisecond})
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	server := netip.AddrPortFrom(p.ServerAddr.V4, 443).String()
	ln := listenIn(t, p.Server, server, true)
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close() })

	const timeout = 400 * time.Millisecond
	tr := trojanVia(p.Client, server, timeout)
	var outcomes []tfo.Outcome
	tr.Observe = func(h outbound.HandshakeInfo) { outcomes = append(outcomes, h.TFO) }
	for range 2 {
		c, err := tr.Handshake(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if outcomes[1] != tfo.Accepted {
		t.Fatalf("second handshake: %s, want accepted (cookie cached)", outcomes[1])
	}
	p.Link.SetBlackhole(true)
	start := time.Now()
	_, err = tr.Handshake(context.Background())
	took := time.Since(start)
	var ne net.Error
	if err == nil || !strings.Contains(err.Error(), "no TLS handshake within 400ms") || !errors.As(err, &ne) {
		t.Fatalf("err = %v; want the handshake timeout", err)
	}
	if took < timeout || took > timeout+time.Second {
		t.Errorf("gave up after %v; want about %v", took, timeout)
	}
}
