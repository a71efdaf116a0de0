package acme_test

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"

	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/acme"
	"github.com/fastrojan/fastrojan/internal/acme/acmetest"
)

const testName = "proxy.fastrojan.test"

// tlsServer is a minimal TLS listener with the manager's config: it answers TLS-ALPN-01 and, for
// everything else, completes the handshake and echoes.
func tlsServer(t *testing.T, ln net.Listener, m *acme.Manager) {
	cfg := m.TLSConfig(&tls.Config{})
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(c, cfg)
				if tc.Handshake() != nil {
					return
				}
				_, _ = io.Copy(tc, tc)
			})
		}
	})
}

func newManager(t *testing.T, pebble *acmetest.CA, tlsAddr, httpAddr string, tlsALPN, http01 bool) (*acme.Manager, *logBuf) {
	logs := &logBuf{}
	m, err := acme.New(acme.Options{
		Domains: []string{testName}, CA: pebble.Directory, CARoot: pebble.APIRootFile,
		Storage: filepath.Join(t.TempDir(), "acme"), TLSAddr: tlsAddr, HTTPAddr: httpAddr,
		TLSALPN: tlsALPN, HTTP01: http01, ObtainTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		if t.Failed() {
			t.Logf("manager log:\n%s", logs.String())
		}
	})
	return m, logs
}

func verifiedDial(t *testing.T, addr string, pebble *acmetest.CA) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: testName, RootCAs: pebble.Roots()})
	if err != nil {
		t.Fatalf("dial with full verification against the CA's root only: %v", err)
	}
	return c
}

func TestObtainTLSALPNAndRenewKeepsOpenConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	pebble := acmetest.Start(t, acmetest.Options{IP: net.IPv4(127, 0, 0, 1), TLSPort: port, HTTPPort: 1})
	m, logs := newManager(t, pebble, ln.Addr().String(), "", true, false)
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	tlsServer(t, ln, m)
	// Before issuance: a temporary certificate that a verifying client refuses.
	if _, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: testName, RootCAs: pebble.Roots()}); err == nil {
		t.Fatal("the temporary certificate verified against the CA's root")
	}
	if err := m.Obtain(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Ready():
	default:
		t.Fatal("Ready not closed after Obtain")
	}
	if !strings.Contains(logs.String(), "tls-alpn-01") || !strings.Contains(logs.String(), "served key authentication certificate") {
		t.Errorf("no TLS-ALPN-01 answer in the log")
	}
	open := verifiedDial(t, ln.Addr().String(), pebble)
	defer open.Close()
	first := open.ConnectionState().PeerCertificates[0]

	if err := m.Renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	second := verifiedDial(t, ln.Addr().String(), pebble)
	defer second.Close()
	renewed := second.ConnectionState().PeerCertificates[0]
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("forced renewal: new handshakes still get serial %x", first.SerialNumber)
	}
	// The connection opened before the renewal still works.
	if _, err := open.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(open, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("connection opened before the renewal: %q, %v", buf, err)
	}
}

func TestObtainHTTP01AndRedirect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpPort := freePort(t)
	pebble := acmetest.Start(t, acmetest.Options{IP: net.IPv4(127, 0, 0, 1), TLSPort: 1, HTTPPort: httpPort})
	httpAddr := net.JoinHostPort("127.0.0.1", itoa(httpPort))
	m, logs := newManager(t, pebble, ln.Addr().String(), httpAddr, false, true)
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	tlsServer(t, ln, m)
	if err := m.Obtain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "http-01") {
		t.Errorf("no HTTP-01 answer in the log")
	}
	verifiedDial(t, ln.Addr().String(), pebble).Close()

	// Anything else on the HTTP port is redirected to https, like a web site.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/some/page?q=1", nil)
	req.Host = testName
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, tlsPort, _ := net.SplitHostPort(ln.Addr().String())
	want := "https://" + testName + ":" + tlsPort + "/some/page?q=1"
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
		t.Errorf("redirect: %d %q, want 301 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

func TestObtainErrorsNameTheStepAndFix(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	pebble := acmetest.Start(t, acmetest.Options{IP: net.IPv4(127, 0, 0, 1), TLSPort: port, HTTPPort: 1})

	cases := []struct {
		name  string
		setup func(o *acme.Options)
		serve bool
		step  string
		fix   string
	}{
		{"CA unreachable", func(o *acme.Options) { o.CA = "https://127.0.0.1:1/dir" }, true,
			"contact the ACME CA at https://127.0.0.1:1/dir", "check the directory URL"},
		{"CA not trusted", func(o *acme.Options) { o.CARoot = "" }, true,
			"contact the ACME CA", "--acme-ca-root"},
		{"challenge refused", func(o *acme.Options) {}, false, // nothing answers TLS-ALPN-01 on the port
			"prove control of " + testName, "resolve (DNS A/AAAA) to this server"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := acme.Options{Domains: []string{testName}, CA: pebble.Directory, CARoot: pebble.APIRootFile,
				Storage: filepath.Join(t.TempDir(), "acme"), TLSAddr: ln.Addr().String(), TLSALPN: true,
				ObtainTimeout: 30 * time.Second}
			tc.setup(&opts)
			m, err := acme.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if err := m.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			if tc.serve {
				tlsServer(t, newListenerOn(t, ln), m)
			}
			err = m.Obtain(t.Context())
			var ae *acme.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Obtain: %v (%T), want an *acme.Error", err, err)
			}
			t.Logf("error: %v", err)
			if !strings.Contains(ae.Step, tc.step) || !strings.Contains(ae.Fix, tc.fix) {
				t.Errorf("error %q\nwant step containing %q and fix containing %q", err, tc.step, tc.fix)
			}
			// Never a silent fallback: the only certificate is still the temporary one.
			if leaf := m.Certificate().Leaf; leaf != nil && leaf.Issuer.String() != leaf.Subject.String() {
				t.Errorf("certificate after a failure is %v, want the temporary one", leaf.Issuer)
			}
		})
	}
}

// newListenerOn wraps ln so a test's server does not close the shared listener.
func newListenerOn(t *testing.T, ln net.Listener) net.Listener {
	return &noCloseListener{Listener: ln, done: make(chan struct{})}
}

type noCloseListener struct {
	net.Listener
	once sync.Once
	done chan struct{}
}

func (l *noCloseListener) Accept() (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := l.Listener.Accept(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-l.done:
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, net.ErrClosed
	}
}

func (l *noCloseListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func itoa(i int) string { return strconv.Itoa(i) }

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBackgroundRenewal: certmagic's maintenance renews a certificate that is due, and new handshakes
// get the new one without anyone asking.
func TestBackgroundRenewal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	pebble := acmetest.Start(t, acmetest.Options{IP: net.IPv4(127, 0, 0, 1), TLSPort: port, HTTPPort: 1, Validity: 12 * time.Second})
	logs := &logBuf{}
	m, err := acme.New(acme.Options{
		Domains: []string{testName}, CA: pebble.Directory, CARoot: pebble.APIRootFile,
		Storage: filepath.Join(t.TempDir(), "acme"), TLSAddr: ln.Addr().String(), TLSALPN: true,
		ObtainTimeout: time.Minute, RenewCheckInterval: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	tlsServer(t, ln, m)
	if err := m.Obtain(t.Context()); err != nil {
		t.Fatal(err)
	}
	first := verifiedDial(t, ln.Addr().String(), pebble)
	serial := first.ConnectionState().PeerCertificates[0].SerialNumber
	first.Close()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: testName, RootCAs: pebble.Roots()})
		if err != nil {
			continue // the old one may have expired just before the new one is in
		}
		got := c.ConnectionState().PeerCertificates[0].SerialNumber
		c.Close()
		if got.Cmp(serial) != 0 {
			return
		}
	}
	t.Fatalf("no renewal within 20 s of a 12 s certificate:\n%s", logs.String())
}
