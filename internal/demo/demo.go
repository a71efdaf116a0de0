// Package demo is `fastrojan demo`: a web page, a server and a client on loopback, with a generated
// certificate and password; it fetches the page through the proxy and reports each fetch.
package demo

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/net/proxy"

	"github.com/fastrojan/fastrojan/internal/client"
	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/outbound"
	"github.com/fastrojan/fastrojan/internal/server"
	"github.com/fastrojan/fastrojan/internal/service"
	"github.com/fastrojan/fastrojan/internal/tfo"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/users"
	"github.com/fastrojan/fastrojan/internal/website"
)

// Run starts the web page, the server and the client, makes n fetches through the proxy and one probe
// without the password, and writes what each saw to out. It fails if any fetch or the probe failed.
func Run(ctx context.Context, n int, out io.Writer, log *slog.Logger) error {
	dir, err := os.MkdirTemp("", "fastrojan-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	site, err := website.Start("127.0.0.1:0", log)
	if err != nil {
		return err
	}
	defer site.Shutdown(context.Background())

	certFile, keyFile, password, err := demoSecrets(dir)
	if err != nil {
		return err
	}
	siteHost, sitePort, _ := config.SplitHostPort(site.Addr())
	scfg := config.Default("server")
	scfg.LocalAddr, scfg.LocalPort = "127.0.0.1", 0
	scfg.RemoteAddr, scfg.RemotePort = siteHost, sitePort
	scfg.Password = []string{password}
	scfg.SSL.Cert, scfg.SSL.Key = certFile, keyFile
	scfg.TCP.FastOpen = true // every leg; where the system lacks TFO the demo says so and runs without it
	sa, err := server.FromConfig(scfg, server.Env{Log: log, Users: users.NewStatic(scfg.Password)})
	if err != nil {
		return err
	}
	sln := sa.Listener
	defer service.Start(log, sa.Parts()...).Close(2 * time.Second)

	srvHost, srvPort, _ := config.SplitHostPort(sln.Addr().String())
	ccfg := config.Default("client")
	ccfg.LocalAddr, ccfg.LocalPort = "127.0.0.1", 0
	ccfg.RemoteAddr, ccfg.RemotePort = srvHost, srvPort
	ccfg.Password = []string{password}
	ccfg.SSL.Cert = certFile // trust the generated certificate, as a trojan-gfw client would
	ccfg.SSL.SNI = "localhost"
	ccfg.TCP.FastOpen = true
	ccfg.Fastrojan.Pool.Spares = 0 // each fetch shows its own connection's TFO outcome; `bench --warm` shows the pool
	handshakes := make(demoHandshakes, n)
	ca, err := client.FromConfig(ccfg, client.Env{Log: log, OnHandshake: handshakes.observe})
	if err != nil {
		return err
	}
	cln := ca.Listener
	defer service.Start(log, ca.Parts()...).Close(2 * time.Second)

	url := "http://" + site.Addr() + "/"
	fmt.Fprintf(out, "web page  %s\nserver    %s (TLS, generated certificate and password)\nclient    socks5://%s\n\n",
		url, sln.Addr(), cln.Addr())
	demoTFONote(out)

	socks, err := proxy.SOCKS5("tcp", cln.Addr().String(), nil, proxy.Direct)
	if err != nil {
		return err
	}
	transport := &http.Transport{
		DialContext:       socks.(proxy.ContextDialer).DialContext,
		DisableKeepAlives: true, // a new tunnel for every fetch: that is what TFO speeds up
	}
	defer transport.CloseIdleConnections()
	hc := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	ok := 0
	for i := 1; i <= n; i++ {
		status, size, ttfb, err := fetch(ctx, hc, url)
		if err != nil {
			fmt.Fprintf(out, "fetch %d/%d: error: %v\n", i, n, err)
			continue
		}
		ok++
		fmt.Fprintf(out, "fetch %d/%d: %s, %d bytes, time to first byte %s, %s\n",
			i, n, status, size, ttfb.Round(time.Microsecond), handshakes.next())
	}

	// What a prober without the password sees: the fallback site, not a proxy.
	probe, probeErr := probeWithoutPassword(sln.Addr().String())
	if probeErr != nil {
		fmt.Fprintf(out, "\nprober without password: error: %v\n", probeErr)
	} else {
		fmt.Fprintf(out, "\nprober without password (HTTPS GET to the server): %s, served by the fallback site\n", probe)
	}
	if ok != n {
		return fmt.Errorf("%d of %d fetches failed", n-ok, n)
	}
	if probeErr != nil {
		return fmt.Errorf("prober without password: %w", probeErr)
	}
	fmt.Fprintf(out, "\ndemo ok: %d/%d fetches through the proxy\n", ok, n)
	return nil
}

// demoSecrets writes a self-signed certificate and its key into dir and makes a random password.
func demoSecrets(dir string) (certFile, keyFile, password string, err error) {
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"localhost", "127.0.0.1"})
	if err != nil {
		return "", "", "", fmt.Errorf("generate certificate: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := errors.Join(os.WriteFile(certFile, certPEM, 0o600), os.WriteFile(keyFile, keyPEM, 0o600)); err != nil {
		return "", "", "", err
	}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	return certFile, keyFile, hex.EncodeToString(pw), nil
}

func fetch(ctx context.Context, hc *http.Client, url string) (status string, size int64, ttfb time.Duration, err error) {
	var start, first time.Time
	trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
	if err != nil {
		return "", 0, 0, err
	}
	start = time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, 0, err
	}
	defer resp.Body.Close()
	size, err = io.Copy(io.Discard, resp.Body)
	if err != nil {
		return "", 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, 0, errors.New("status " + resp.Status)
	}
	return resp.Status, size, first.Sub(start), nil
}

// probeWithoutPassword speaks HTTPS to the server as a browser or a censor's prober would.
func probeWithoutPassword(addr string) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	return resp.Status + ", " + strconv.Itoa(int(resp.ContentLength)) + " bytes", nil
}

// demoTFONote says what TCP Fast Open can do on this machine, and how to enable what is missing. The
// demo never changes system settings itself.
func demoTFONote(out io.Writer) {
	s, err := tfo.ReadSysctl()
	switch {
	case err != nil:
		fmt.Fprintf(out, "tcp fast open: not available on %s; the demo runs without it\n\n", runtime.GOOS)
	case s.Client() && s.Server():
		fmt.Fprintf(out, "tcp fast open: on (%s = %d); the first fetch gets a cookie, the next ones send the TLS ClientHello in the SYN\n\n", tfo.SysctlKey, int(s))
	default:
		var missing string
		switch {
		case !s.Client() && !s.Server():
			missing = "neither the client bit 0x1 nor the server bit 0x2"
		case !s.Server():
			missing = "the server bit 0x2 missing, so the server cannot accept data in a SYN"
		default:
			missing = "the client bit 0x1 missing, so the client cannot send data in a SYN"
		}
		fmt.Fprintf(out, "tcp fast open: %s = %d, with %s; every fetch works, with a normal handshake.\n"+
			"  To see TFO save a round trip, run (as root; the demo does not change system settings): %s\n\n",
			tfo.SysctlKey, int(s), missing, s.Fix())
	}
}

// demoHandshakes collects the client's handshakes with the server, one per fetch.
type demoHandshakes chan outbound.HandshakeInfo

func (d demoHandshakes) observe(h outbound.HandshakeInfo) {
	select {
	case d <- h:
	default: // more handshakes than fetches (a retry): keep the first ones
	}
}

// next describes the handshake of the fetch that just ended.
func (d demoHandshakes) next() string {
	select {
	case h := <-d:
		s := "tfo: " + h.TFO.String()
		if h.HelloBytes > 0 {
			s += fmt.Sprintf(" (ClientHello %d bytes", h.HelloBytes)
			if h.Resumed {
				s += ", resumed"
			}
			s += ")"
		}
		return s
	default:
		return "tfo: unknown (no handshake seen)"
	}
}
