//go:build unix

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/acme/acmetest"
)

// acmeName is the server's name in the ACME tests; the local CA's DNS resolves it to 127.0.0.1.
const acmeName = "proxy.fastrojan.test"

var linkRE = regexp.MustCompile(`trojan://\S+`)

// verifiedCert completes a handshake trusting only the CA's root, with the name checked, and returns
// the server's certificate.
func verifiedCert(t *testing.T, addr string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: acmeName, RootCAs: roots})
	if err != nil {
		t.Fatalf("TLS with full verification against the ACME CA's root: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// probeGetsSite checks that a prober over TLS trusting anything gets the fallback site and nothing
// else, and one speaking plain HTTP gets nginx's answer to that, as from any HTTPS site.
func probeGetsSite(t *testing.T, addr string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: acmeName})
	if err != nil {
		t.Fatalf("TLS probe: %v", err)
	}
	status, body, err := httpGetVia(c, acmeName, "/")
	c.Close()
	if err != nil || status != "HTTP/1.1 200 OK" || !strings.Contains(string(body), "It works") {
		t.Fatalf("TLS probe got %q %q %v, want the fallback site", status, body, err)
	}
	pc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	status, body, err = httpGetVia(pc, acmeName, "/")
	pc.Close()
	// Plain HTTP on the TLS port gets what nginx answers there (issue 16), during issuance too.
	if err != nil || status != "HTTP/1.1 400 Bad Request" || !strings.Contains(string(body), "The plain HTTP request was sent to HTTPS port") {
		t.Fatalf("plain HTTP probe got %q %q %v, want nginx's answer to plain HTTP on an HTTPS port", status, body, err)
	}
}

// startVerifyingClient runs `fastrojan -c` as a client that trusts only the CA's root and checks the
// server's name; it returns its SOCKS5 address.
func startVerifyingClient(t *testing.T, server string, rootPEM []byte, password string) string {
	t.Helper()
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(rootFile, rootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(server)
	socks := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeJSON(t, dir, "client.json", map[string]any{
		"run_type": "client", "local_addr": "127.0.0.1", "local_port": atoi(t, socks[strings.LastIndex(socks, ":")+1:]),
		"remote_addr": host, "remote_port": atoi(t, port), "password": []string{password},
		"ssl": map[string]any{"verify": true, "verify_hostname": true, "cert": rootFile, "sni": acmeName},
	})
	cl := start(t, binary, "-c", cfg)
	waitListening(t, cl, socks)
	return socks
}

func atoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func passwordOf(t *testing.T, link string) string {
	l := strings.TrimPrefix(link, "trojan://")
	pw, _, ok := strings.Cut(l, "@")
	if !ok {
		t.Fatalf("link %q has no password", link)
	}
	return pw
}

// TestACMEServerTLSALPN: `fastrojan server --host NAME` gets its certificate from a local ACME CA by
// TLS-ALPN-01 on its own Trojan port. Probes during the issuance get the fallback site; a client
// that trusts only the CA's root fetches through it with full verification; a forced renewal
// (SIGUSR1) swaps the certificate while a tunnel stays open.
func TestACMEServerTLSALPN(t *testing.T) {
	port := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	pebble := acmetest.Start(t, acmetest.Options{IP: net.IPv4(127, 0, 0, 1), TLSPort: port, HTTPPort: 1, Hold: true})
	state := filepath.Join(t.TempDir(), "state")
	srv := start(t, binary, "server", "--host", acmeName, "--listen", listen, "--state-dir", state,
		"--acme-ca", pebble.Directory, "--acme-ca-root", pebble.APIRootFile, "--http-listen", "", "--log-level", "debug")
	waitListening(t, srv, listen)

	// Issuance under way (the CA is validating, held): probers still see only the web site, and no
	// link has been printed.
	select {
	case <-pebble.Validating():
	case <-time.After(30 * time.Second):
		t.Fatalf("the CA never started validating:\n%s", srv.Output())
	}
	probeGetsSite(t, listen)
	if linkRE.MatchString(srv.Output()) {
		t.Fatal("link printed before the certificate was issued")
	}
	pebble.Release()

	link := waitOutput(t, srv, linkRE)
	if strings.Contains(link, "allowInsecure") {
		t.Errorf("link %q carries allowInsecure with an ACME certificate", link)
	}
	if !strings.Contains(srv.Output(), "tls-alpn-01") || !strings.Contains(srv.Output(), "outcome=acme_challenge") {
		t.Errorf("the certificate did not come by TLS-ALPN-01 on the Trojan port")
	}
	if _, err := os.Stat(filepath.Join(state, "cert.pem")); err == nil {
		t.Error("a self-signed cert.pem was written next to the ACME certificate")
	}
	roots := pebble.Roots()
	first := verifiedCert(t, listen, roots)
	probeGetsSite(t, listen)

	// A client that trusts only the CA's root, with hostname verification, fetches through the proxy.
	socks := startVerifyingClient(t, listen, pebble.RootPEM(), passwordOf(t, link))
	origin := startOrigin(t, "via acme")
	status, body, err := httpGetVia(socksDial(t, socks, origin), "o", "/")
	if err != nil || status != "HTTP/1.1 200 OK" || string(body) != "via acme" {
		t.Fatalf("fetch through the verified tunnel: %q %q %v", status, body, err)
	}

	// A tunnel stays open across a forced renewal.
	echo := startEchoOrigin(t, "tcp", "127.0.0.1:0")
	tunnel := socksDial(t, socks, echo)
	echoes(t, tunnel, "before renewal")
	if err := srv.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	var renewed *x509.Certificate
	deadline := time.Now().Add(60 * time.Second)
	for renewed == nil && time.Now().Before(deadline) {
		if c := verifiedCert(t, listen, roots); c.SerialNumber.Cmp(first.SerialNumber) != 0 {
			renewed = c
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if renewed == nil {
		t.Fatalf("SIGUSR1: still serial %x after 60 s", first.SerialNumber)
	}
	echoes(t, tunnel, "after renewal")
	status, body, err = httpGetVia(socksDial(t, socks, origin), "o", "/")
	if err != nil || string(body) != "via acme" {
		t.Fatalf("fetch after renewal: %q %q %v", status, body, err)
	}
	t.Logf("serial %x renewed to %x with a tunnel open", first.SerialNumber, renewed.SerialNumber)
}

// TestACMEServerHTTP01: the same by HTTP-01 on the port-80 server, which redirects everything else to
// https. A restart with the CA gone serves the stored certificate; a renewal that fails keeps it.
func TestACMEServerHTTP01(t *testing.T) {
	port, httpPort := freePort(t), freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	pebble := acmetest.Start(t, acmetest.Options{IP: net.IPv4(127, 0, 0, 1), TLSPort: 1, HTTPPort: httpPort})
	state := filepath.Join(t.TempDir(), "state")
	args := []string{"server", "--host", acmeName, "--listen", listen, "--state-dir", state,
		"--acme-ca", pebble.Directory, "--acme-ca-root", pebble.APIRootFile, "--http-listen", httpAddr,
		"--acme-challenges", "http-01", "--no-qr"}
	srv := start(t, binary, args...)
	link := waitOutput(t, srv, linkRE)
	if strings.Contains(link, "allowInsecure") {
		t.Errorf("link %q carries allowInsecure", link)
	}
	if !strings.Contains(srv.Output(), "http-01") || strings.Contains(srv.Output(), "outcome=acme_challenge") {
		t.Errorf("the certificate did not come by HTTP-01 alone")
	}
	roots := pebble.Roots()
	first := verifiedCert(t, listen, roots)

	// The HTTP port is a web site's: it redirects to https.
	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/index.html", nil)
	req.Host = acmeName
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := fmt.Sprintf("https://%s:%d/index.html", acmeName, port); resp.StatusCode != 301 || resp.Header.Get("Location") != want {
		t.Errorf("port 80: %d %q, want 301 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}

	// Restart with the CA unreachable: the stored certificate is served at once, the link is the same.
	if err := srv.stop(15 * time.Second); err != nil {
		t.Fatalf("server exit: %v", err)
	}
	pebble.Close()
	srv2 := start(t, binary, args...)
	if got := waitOutput(t, srv2, linkRE); got != link {
		t.Errorf("link changed across restart: %q then %q", link, got)
	}
	if c := verifiedCert(t, listen, roots); c.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("restart served serial %x, want the stored %x", c.SerialNumber, first.SerialNumber)
	}
	// A forced renewal that cannot reach the CA says why and keeps the certificate.
	if err := srv2.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, srv2, regexp.MustCompile(`certificate reload failed; keeping the old one.*contact the ACME CA.*fix: `))
	if c := verifiedCert(t, listen, roots); c.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("after a failed renewal: serial %x, want %x", c.SerialNumber, first.SerialNumber)
	}
	probeGetsSite(t, listen)
}

// TestACMEServerFailureIsAnError: when the CA cannot be reached the server stops with the step and the
// fix, prints no link, and writes no self-signed certificate.
func TestACMEServerFailureIsAnError(t *testing.T) {
	port := freePort(t)
	dead := freePort(t) // nothing listens there
	state := filepath.Join(t.TempDir(), "state")
	srv := start(t, binary, "server", "--host", acmeName, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--state-dir", state,
		"--acme-ca", fmt.Sprintf("https://127.0.0.1:%d/dir", dead), "--http-listen", "")
	select {
	case <-srv.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("server still running after a failed issuance:\n%s", srv.Output())
	}
	out := srv.Output()
	if srv.err == nil {
		t.Errorf("exit status 0 after a failed issuance")
	}
	for _, want := range []string{"contact the ACME CA at https://127.0.0.1:", "fix: check the directory URL", "self-signed certificate instead"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if linkRE.MatchString(out) {
		t.Errorf("a link was printed without a certificate")
	}
	if _, err := os.Stat(filepath.Join(state, "cert.pem")); err == nil {
		t.Error("a self-signed certificate was written")
	}
}

// startOrigin is an HTTP server on loopback that answers body.
func startOrigin(t *testing.T, body string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) }),
		ReadHeaderTimeout: 5 * time.Second}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// echoes writes msg on c and expects it back.
func echoes(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("tunnel write (%s): %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("tunnel echo (%s): %q %v", msg, buf, err)
	}
}

// TestACMEConfigFile: a trojan-gfw config.json with a fastrojan.acme object instead of ssl.cert and
// ssl.key gets its certificate the same way, passes -t, and renews on SIGUSR1.
func TestACMEConfigFile(t *testing.T) {
	port := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	pebble := acmetest.Start(t, acmetest.Options{IP: net.IPv4(127, 0, 0, 1), TLSPort: port, HTTPPort: 1})
	dir := t.TempDir()
	cfg := writeJSON(t, dir, "config.json", map[string]any{
		"run_type": "server", "local_addr": "127.0.0.1", "local_port": port,
		"remote_addr": "127.0.0.1", "remote_port": 81, "password": []string{"acme-config"},
		"fastrojan": map[string]any{"acme": map[string]any{
			"domains": []string{acmeName}, "ca": pebble.Directory, "ca_root": pebble.APIRootFile,
			"storage": filepath.Join(dir, "acme"), "http_listen": "", "challenges": []string{"tls-alpn-01"},
		}},
	})
	if out, err := exec.Command(binary, "-t", "-c", cfg).CombinedOutput(); err != nil || !strings.Contains(string(out), "ok (run_type server)") {
		t.Fatalf("-t: %v\n%s", err, out)
	}
	srv := start(t, binary, "-c", cfg)
	waitOutput(t, srv, regexp.MustCompile(`certificate in use`))
	roots := pebble.Roots()
	first := verifiedCert(t, listen, roots)
	if err := srv.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, srv, regexp.MustCompile(`certificate reloaded`))
	if c := verifiedCert(t, listen, roots); c.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Errorf("SIGUSR1 did not renew: serial %x", c.SerialNumber)
	}
}
