package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/net/proxy"

	"github.com/fastrojan/fastrojan/internal/config"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/users"
	"github.com/fastrojan/fastrojan/internal/website"
)

// demoCommand is the README's first command: a web page, a server and a client on loopback, with a
// generated certificate and password; it fetches the page through the proxy and reports each fetch.
func demoCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 5, "how many fetches")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	level, err := parseLevel(*logLevel)
	if err != nil || *n < 1 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: fastrojan demo [-n 5] [--log-level warn]")
		return exitUsage
	}
	log := newLogger(stderr, level, "text")
	if err := runDemo(ctx, *n, stdout, log); err != nil {
		fmt.Fprintf(stderr, "demo failed: %v\n", err)
		return exitFail
	}
	return exitOK
}

func runDemo(ctx context.Context, n int, out io.Writer, log *slog.Logger) error {
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

	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"localhost", "127.0.0.1"})
	if err != nil {
		return fmt.Errorf("generate certificate: %w", err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	password := hex.EncodeToString(pw)

	siteHost, sitePort, _ := splitHostPort(site.Addr())
	scfg := config.Default("server")
	scfg.LocalAddr, scfg.LocalPort = "127.0.0.1", 0
	scfg.RemoteAddr, scfg.RemotePort = siteHost, sitePort
	scfg.Password = []string{password}
	scfg.SSL.Cert, scfg.SSL.Key = certFile, keyFile
	scfg.TCP.FastOpen = true // every leg; where the system lacks TFO the demo says so and runs without it
	srv, sln, _, err := buildServer(scfg, log, users.NewStatic(scfg.Password))
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	srvDone := make(chan error, 1)
	go func() { srvDone <- serve(ctx, log, 2*time.Second, srv, sln) }()
	defer func() { stop(); <-srvDone }()

	srvHost, srvPort, _ := splitHostPort(sln.Addr().String())
	ccfg := config.Default("client")
	ccfg.LocalAddr, ccfg.LocalPort = "127.0.0.1", 0
	ccfg.RemoteAddr, ccfg.RemotePort = srvHost, srvPort
	ccfg.Password = []string{password}
	ccfg.SSL.Cert = certFile // trust the generated certificate, as a trojan-gfw client would
	ccfg.SSL.SNI = "localhost"
	ccfg.TCP.FastOpen = true
	ccfg.Fastrojan.Pool.Spares = 0 // each fetch shows its own connection's TFO outcome; `bench --warm` shows the pool
	handshakes := make(demoHandshakes, n)
	cl, cln, err := buildClient(ccfg, log, &telemetry{onHandshake: handshakes.observe})
	if err != nil {
		return err
	}
	cliDone := make(chan error, 1)
	go func() { cliDone <- serve(ctx, log, 2*time.Second, cl, cln) }()
	defer func() { stop(); <-cliDone }()

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
