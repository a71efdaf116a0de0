package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/netlab"
	"github.com/fastrojan/fastrojan/internal/tlsconf"
	"github.com/fastrojan/fastrojan/internal/trojan"
)

// binary is the fastrojan executable built once for the package.
var binary string

func TestMain(m *testing.M) {
	_, _ = netlab.SweepStale() // namespaces a killed earlier run of the lab tests left behind
	dir, err := os.MkdirTemp("", "fastrojan-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "fastrojan")
	build := exec.Command("go", "build", "-o", binary, "github.com/fastrojan/fastrojan/cmd/fastrojan")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build fastrojan:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a process under test; its output is kept for failure messages.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs name with args; at cleanup it is sent SIGTERM and must exit within 15 s.
func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			t.Errorf("%s did not exit within 15 s of SIGTERM; output:\n%s", name, p.Output())
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), p.Output())
		}
	})
	return p
}

// stop sends SIGTERM and waits for the exit status. Safe to call from any goroutine.
func (p *proc) stop(within time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(within):
		return fmt.Errorf("no exit within %s of SIGTERM", within)
	}
}

// tlsDial opens a TLS connection to addr as a browser would, trusting anything.
func tlsDial(t testing.TB, addr string) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("tls dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// freePort returns a loopback TCP port that was free a moment ago.
// The kernel may hand the same ephemeral port out again once it is closed, so two calls in one test
// (server and client) could collide: ports given out are remembered and never given twice.
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !portsGiven[port] {
			portsGiven[port] = true
			return port
		}
	}
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// waitListening waits until addr accepts TCP connections or p exits.
func waitListening(t testing.TB, p *proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.done:
			t.Fatalf("process exited before listening on %s: %v\n%s", addr, p.err, p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("nothing listening on %s after 15 s\n%s", addr, p.Output())
}

// certFiles writes a self-signed certificate for localhost and loopback into dir.
func certFiles(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned([]string{"localhost", "127.0.0.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// writeJSON writes v as a config file in dir.
func writeJSON(t testing.TB, dir, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// socksDial opens a SOCKS5 CONNECT to dest through the proxy at proxyAddr and returns the raw TCP
// connection (so tests can half-close it).
func socksDial(t testing.TB, proxyAddr, dest string) *net.TCPConn {
	t.Helper()
	c, err := socksDialErr(proxyAddr, dest)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func socksDialErr(proxyAddr, dest string) (*net.TCPConn, error) {
	a, err := trojan.ParseAddrString(dest)
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	// Greeting and request in two steps, as SOCKS5 clients do: trojan-gfw refuses them coalesced.
	if _, err := tc.Write([]byte{5, 1, 0}); err != nil {
		tc.Close()
		return nil, err
	}
	method := make([]byte, 2)
	if _, err := io.ReadFull(tc, method); err != nil || !bytes.Equal(method, []byte{5, 0}) {
		tc.Close()
		return nil, fmt.Errorf("socks5 method reply %x: %v", method, err)
	}
	req, err := a.AppendTo([]byte{5, 1, 0})
	if err != nil {
		tc.Close()
		return nil, err
	}
	if _, err := tc.Write(req); err != nil {
		tc.Close()
		return nil, err
	}
	// Reply header (4) + IPv4 bound address (4 + 2): the proxies under test answer 0.0.0.0:0.
	resp := make([]byte, 4+4+2)
	if _, err := io.ReadFull(tc, resp); err != nil {
		tc.Close()
		return nil, fmt.Errorf("socks5 reply: %w", err)
	}
	if resp[0] != 5 || resp[1] != 0 || resp[3] != 1 {
		tc.Close()
		return nil, fmt.Errorf("socks5 reply %x", resp)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// httpGetVia sends a plain HTTP/1.1 GET for path through conn and returns status line and body.
func httpGetVia(conn net.Conn, host, path string) (status string, body []byte, err error) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host); err != nil {
		return "", nil, err
	}
	all, err := io.ReadAll(conn)
	if err != nil {
		return "", nil, err
	}
	head, body, ok := bytes.Cut(all, []byte("\r\n\r\n"))
	if !ok {
		return "", nil, fmt.Errorf("no HTTP response: %q", all)
	}
	status, _, _ = strings.Cut(string(head), "\r\n")
	return status, body, nil
}

// serveTCP listens on network/addr and serves each connection with serve on a goroutine of its own;
// at cleanup it stops accepting, cancels ctx (serve closes its connection when ctx ends) and waits.
// It returns the address.
func serveTCP(t testing.TB, network, addr string, serve func(ctx context.Context, c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listen %s %s: %v", network, addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				serve(ctx, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// startEchoOrigin serves TCP on network/addr: each connection reads until EOF while echoing, then
// closes. It returns the address.
func startEchoOrigin(t testing.TB, network, addr string) string {
	t.Helper()
	return serveTCP(t, network, addr, func(_ context.Context, c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, bufio.NewReader(c))
	})
}

// trojanGFW returns the path of Debian's trojan binary, or skips.
func trojanGFW(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("trojan")
	if err != nil {
		t.Skip("interop test needs trojan-gfw on PATH (Debian: apt-get install trojan)")
	}
	return p
}

// waitOutput waits until re matches p's output, or p exits, or 60 s pass.
func waitOutput(t *testing.T, p *proc, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindString(p.Output()); m != "" {
			return m
		}
		select {
		case <-p.done:
			t.Fatalf("process exited before printing %s: %v\n%s", re, p.err, p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("no %s after 60 s:\n%s", re, p.Output())
	return ""
}

// metric returns the value of the sample whose name and labels are exactly series, or -1.
func metric(body, series string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}
