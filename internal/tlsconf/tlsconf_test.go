package tlsconf

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
)

// certFiles generates a self-signed certificate for hosts and writes cert.pem and key.pem into dir.
func certFiles(t *testing.T, dir string, hosts ...string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	certPEM, keyPEM, err := GenerateSelfSigned(hosts)
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
	block, _ := pem.Decode(certPEM)
	cert, err = x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// handshake runs one TLS handshake over loopback TCP and returns the client's view and error.
func handshake(t *testing.T, srv, cli *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, srv)
		if tc.Handshake() == nil {
			// Let the client read the session ticket (TLS 1.3 sends it after the handshake).
			tc.Write([]byte("x"))
		}
	}()
	defer wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cli}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.(*tls.Conn).ConnectionState(), nil
}

func serverSSL(certFile, keyFile string) config.SSL {
	s := config.Default(config.RunServer).SSL
	s.Cert, s.Key = certFile, keyFile
	return s
}

func clientSSL(trust string) config.SSL {
	s := config.Default(config.RunClient).SSL
	s.Cert = trust
	return s
}

func TestHandshakeVerification(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert := certFiles(t, dir, "example.test", "127.0.0.1")
	srv, _, err := Server(serverSSL(certFile, keyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		ssl     func() config.SSL
		remote  string
		wantErr string // "" = success
	}{
		{"trusted cert, name from remote_addr", func() config.SSL { return clientSSL(certFile) }, "example.test", ""},
		{"trusted cert, IP remote_addr checks IP SAN", func() config.SSL { return clientSSL(certFile) }, "127.0.0.1", ""},
		{"trusted cert, sni overrides remote_addr", func() config.SSL { s := clientSSL(certFile); s.SNI = "example.test"; return s }, "10.9.9.9", ""},
		{"wrong name fails", func() config.SSL { s := clientSSL(certFile); s.SNI = "wrong.test"; return s }, "127.0.0.1", "not wrong.test"},
		{"verify_hostname off, wrong name succeeds", func() config.SSL {
			s := clientSSL(certFile)
			s.SNI, s.VerifyHostname = "wrong.test", false
			return s
		}, "127.0.0.1", ""},
		{"verify_hostname off still checks the chain", func() config.SSL {
			s := clientSSL("") // system roots do not include our self-signed cert
			s.VerifyHostname = false
			return s
		}, "example.test", "verify server certificate chain"},
		{"untrusted cert fails", func() config.SSL { return clientSSL("") }, "example.test", "certificate signed by unknown authority"},
		{"verify off accepts anything", func() config.SSL { s := clientSSL(""); s.Verify = false; s.SNI = "wrong.test"; return s }, "x", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cli, err := Client(tc.ssl(), tc.remote, nil)
			if err != nil {
				t.Fatal(err)
			}
			cs, err := handshake(t, srv, cli)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("handshake failed: %v", err)
				}
				if !cs.PeerCertificates[0].Equal(cert) {
					t.Error("client saw a different certificate")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("handshake error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestClientErrors(t *testing.T) {
	if _, err := Client(clientSSL("/nonexistent/ca.pem"), "x", nil); err == nil || !strings.Contains(err.Error(), "ssl.cert") {
		t.Errorf("missing CA file: %v", err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	if _, err := Client(clientSSL(notPEM), "x", nil); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("non-PEM CA file: %v", err)
	}
}

func TestALPN(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := certFiles(t, dir, "example.test")
	ss := serverSSL(certFile, keyFile)
	ss.ALPN = []string{"http/1.1"}
	srv, _, err := Server(ss, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs := clientSSL(certFile)
	cs.ALPN = []string{"h2", "http/1.1"}
	cli, err := Client(cs, "example.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := handshake(t, srv, cli)
	if err != nil {
		t.Fatal(err)
	}
	if st.NegotiatedProtocol != "http/1.1" {
		t.Errorf("ALPN = %q, want http/1.1", st.NegotiatedProtocol)
	}
}

func TestReloadSwapsCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, first := certFiles(t, dir, "example.test")
	var logs bytes.Buffer
	srv, store, err := Server(serverSSL(certFile, keyFile), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cs := clientSSL("")
	cs.Verify = false
	cs.ReuseSession = false // full handshakes: a resumed one shows the certificate of its first
	cli, _ := Client(cs, "example.test", nil)
	seen := func() *x509.Certificate {
		t.Helper()
		st, err := handshake(t, srv, cli)
		if err != nil {
			t.Fatal(err)
		}
		return st.PeerCertificates[0]
	}
	if !seen().Equal(first) {
		t.Fatal("first handshake did not see the first certificate")
	}
	_, _, second := certFiles(t, dir, "example.test") // overwrite the same files
	if !seen().Equal(first) {
		t.Fatal("certificate changed before Reload")
	}
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if !seen().Equal(second) {
		t.Fatal("after Reload a new handshake did not see the new certificate")
	}
	// A broken file: Reload fails and the current certificate stays.
	os.WriteFile(keyFile, []byte("garbage"), 0o600)
	if err := store.Reload(); err == nil {
		t.Fatal("Reload accepted a broken key")
	}
	if !seen().Equal(second) {
		t.Fatal("failed Reload changed the certificate")
	}
	if !strings.Contains(logs.String(), "certificate reload failed") {
		t.Errorf("failed reload not logged: %s", logs.String())
	}
}

func TestServerErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, _, _ := certFiles(t, dir, "a")
	_, otherKey, _ := certFiles(t, t.TempDir(), "b")
	cases := map[string]config.SSL{
		"no cert":      serverSSL("", otherKey),
		"missing key":  serverSSL(certFile, filepath.Join(dir, "nope")),
		"mismatch key": serverSSL(certFile, otherKey),
	}
	for name, ssl := range cases {
		if _, _, err := Server(ssl, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSessionResumption(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := certFiles(t, dir, "example.test")
	resumes := func(mut func(*config.SSL), tweak func(*tls.Config)) []bool {
		ss := serverSSL(certFile, keyFile)
		mut(&ss)
		srv, _, err := Server(ss, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tweak != nil {
			tweak(srv)
		}
		cli, _ := Client(clientSSL(certFile), "example.test", nil)
		var out []bool
		for range 3 {
			st, err := handshake(t, srv, cli)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, st.DidResume)
		}
		return out
	}
	want := []bool{false, true, true}
	// trojan-gfw's defaults (reuse_session on, session_ticket off): the server's own session cache.
	if got := resumes(func(*config.SSL) {}, nil); !reflect.DeepEqual(got, want) {
		t.Errorf("reuse_session on, session_ticket off: resumed %v, want %v", got, want)
	}
	if got := resumes(func(s *config.SSL) { s.SessionTicket = true }, nil); !reflect.DeepEqual(got, want) {
		t.Errorf("session_ticket on: resumed %v, want %v", got, want)
	}
	none := []bool{false, false, false}
	for _, ticket := range []bool{false, true} {
		if got := resumes(func(s *config.SSL) { s.ReuseSession, s.SessionTicket = false, ticket }, nil); !reflect.DeepEqual(got, none) {
			t.Errorf("reuse_session off (session_ticket %v): resumed %v, want %v", ticket, got, none)
		}
	}
	// session_timeout: a ticket older than the limit is refused (a negative limit makes every ticket too old).
	if got := resumes(func(s *config.SSL) { s.SessionTicket = true }, func(c *tls.Config) { limitTicketAge(c, -time.Second) }); !reflect.DeepEqual(got, none) {
		t.Errorf("expired tickets: resumed %v, want %v", got, none)
	}
}

// The session cache behind reuse_session without session_ticket: a session lives session_timeout
// and no longer, the cache holds at most its size (the least recently used go), and a ticket it
// does not know (another server's, a forged one) means a full handshake, not an error.
func TestSessionCache(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := certFiles(t, dir, "example.test")
	now := time.Now()
	newServer := func(size int, ttl time.Duration) *tls.Config {
		srv, _, err := Server(serverSSL(certFile, keyFile), nil)
		if err != nil {
			t.Fatal(err)
		}
		c := newSessionCache(size, ttl)
		c.now = func() time.Time { return now }
		c.install(srv)
		return srv
	}
	newClient := func() *tls.Config {
		cli, _ := Client(clientSSL(certFile), "example.test", nil)
		return cli
	}
	resumed := func(srv, cli *tls.Config) bool {
		t.Helper()
		st, err := handshake(t, srv, cli)
		if err != nil {
			t.Fatal(err)
		}
		return st.DidResume
	}

	srv, cli := newServer(16, 10*time.Minute), newClient()
	resumed(srv, cli)
	now = now.Add(10*time.Minute - time.Second)
	if !resumed(srv, cli) {
		t.Error("a session within session_timeout was not resumed")
	}
	now = now.Add(10 * time.Minute) // the newest ticket is from the resumed handshake, at the old now
	if resumed(srv, cli) {
		t.Error("a session past session_timeout was resumed")
	}

	// Another server (a restarted process, another node of a farm) does not know the ticket.
	if resumed(newServer(16, time.Hour), cli) {
		t.Error("a server resumed a session it never issued")
	}

	// Size: with room for two sessions, the first of three clients loses its session.
	small := newServer(2, time.Hour)
	clients := []*tls.Config{newClient(), newClient(), newClient()}
	for _, c := range clients {
		resumed(small, c)
	}
	if resumed(small, clients[0]) {
		t.Error("an evicted session was resumed")
	}
	if !resumed(small, clients[2]) {
		t.Error("the newest session was not resumed")
	}

	// A forged identity of the right length is not an error, just a full handshake.
	c := newSessionCache(2, time.Hour)
	if ss, err := c.unwrap(make([]byte, sessionIDLen), tls.ConnectionState{}); ss != nil || err != nil {
		t.Errorf("unknown ticket: %v, %v; want nil, nil", ss, err)
	}
}

func TestCipherAndCurveTakeEffect(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := certFiles(t, dir, "example.test")
	ss := serverSSL(certFile, keyFile)
	ss.Cipher = "DHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
	ss.Curves = "P-384"
	srv, _, err := Server(ss, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs := clientSSL(certFile)
	cs.Curves = "X25519:P-384"
	cli, _ := Client(cs, "example.test", nil)
	cli.MaxVersion = tls.VersionTLS12 // TLS 1.2 suites are the configurable ones
	st, err := handshake(t, srv, cli)
	if err != nil {
		t.Fatal(err)
	}
	if st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 {
		t.Errorf("suite = %s, want ECDHE-ECDSA-AES256-GCM-SHA384", tls.CipherSuiteName(st.CipherSuite))
	}
	if st.CurveID != tls.CurveP384 {
		t.Errorf("curve = %v, want P-384", st.CurveID)
	}
	// TLS 1.3 with the client offering only X25519.
	cs.Curves = "x25519"
	cli, _ = Client(cs, "example.test", nil)
	srv2, _, _ := Server(serverSSL(certFile, keyFile), nil)
	st, err = handshake(t, srv2, cli)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != tls.VersionTLS13 || st.CurveID != tls.X25519 {
		t.Errorf("TLS 1.3 handshake: version %x curve %v, want TLS 1.3 X25519", st.Version, st.CurveID)
	}
}

func TestConfigLogsWhatGoIgnores(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := certFiles(t, dir, "example.test")
	run := func(mut func(*config.SSL)) string {
		var buf bytes.Buffer
		ss := serverSSL(certFile, keyFile)
		mut(&ss)
		if _, _, err := Server(ss, slog.New(slog.NewTextHandler(&buf, nil))); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	out := run(func(s *config.SSL) {
		s.Cipher = "ECDHE-ECDSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"
		s.CipherTLS13 = "TLS_AES_256_GCM_SHA384"
		s.Curves = "X448:X25519"
	})
	for _, want := range []string{"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384", "ssl.cipher_tls13 is ignored", "X448"} {
		if strings.Count(out, want) != 1 {
			t.Errorf("log should mention %q once:\n%s", want, out)
		}
	}
	out = run(func(s *config.SSL) {
		s.Cipher = "ECDHE-ECDSA-AES128-GCM-SHA256"
		s.CipherTLS13 = "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"
	})
	if strings.Contains(out, "ignor") {
		t.Errorf("nothing is ignored, yet the log says so:\n%s", out)
	}
}

func TestMapCiphers(t *testing.T) {
	cases := []struct {
		in      string
		ids     []uint16
		unknown []string
	}{
		{"", nil, nil},
		{"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, nil},
		{"ECDHE-ECDSA-CHACHA20-POLY1305,ECDHE-RSA-CHACHA20-POLY1305", []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}, nil},
		{"ECDHE-RSA-AES256-GCM-SHA384 DHE-RSA-AES128-GCM-SHA256", []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}, []string{"DHE-RSA-AES128-GCM-SHA256"}},
		{"AES128-SHA:AES256-SHA:DES-CBC3-SHA", []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA}, nil},
		{"ecdhe-ecdsa-aes128-sha:ECDHE-ECDSA-AES128-SHA", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}, nil},
		{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, nil},
		{"HIGH:!aNULL:!MD5:-RC4:@STRENGTH", nil, []string{"HIGH"}},
		{"TLS_AES_128_GCM_SHA256", nil, []string{"TLS_AES_128_GCM_SHA256"}},
		{"CAMELLIA128-SHA:ECDHE-RSA-AES128-SHA256", []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256}, []string{"CAMELLIA128-SHA"}},
	}
	for _, tc := range cases {
		ids, unknown := MapCiphers(tc.in)
		if !reflect.DeepEqual(ids, tc.ids) || !reflect.DeepEqual(unknown, tc.unknown) {
			t.Errorf("MapCiphers(%q) = %v, %v; want %v, %v", tc.in, ids, unknown, tc.ids, tc.unknown)
		}
	}
	// Every suite in trojan-gfw's shipped client and server lists that Go has must map.
	const shipped = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA:DHE-RSA-AES256-SHA:AES128-SHA:AES256-SHA:DES-CBC3-SHA"
	ids, unknown := MapCiphers(shipped)
	if len(ids) != 13 || !reflect.DeepEqual(unknown, []string{"DHE-RSA-AES128-SHA", "DHE-RSA-AES256-SHA"}) {
		t.Errorf("shipped list: %d ids, unknown %v", len(ids), unknown)
	}
	// Each mapped ID is one Go knows.
	known := map[uint16]bool{}
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		known[s.ID] = true
	}
	for name, id := range opensslCiphers {
		if !known[id] {
			t.Errorf("%s maps to %#04x, which Go does not implement", name, id)
		}
	}
}

func TestMapCurves(t *testing.T) {
	cases := []struct {
		in      string
		ids     []tls.CurveID
		unknown []string
	}{
		{"", nil, nil},
		{"X25519:P-256:prime256v1:secp384r1:X25519MLKEM768", []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.X25519MLKEM768}, nil},
		{"x25519,secp521r1", []tls.CurveID{tls.X25519, tls.CurveP521}, nil},
		{"X448:ffdhe2048:P-256", []tls.CurveID{tls.CurveP256}, []string{"X448", "ffdhe2048"}},
		{"SecP256r1MLKEM768:SecP384r1MLKEM1024", []tls.CurveID{tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024}, nil},
	}
	for _, tc := range cases {
		ids, unknown := MapCurves(tc.in)
		if !reflect.DeepEqual(ids, tc.ids) || !reflect.DeepEqual(unknown, tc.unknown) {
			t.Errorf("MapCurves(%q) = %v, %v; want %v, %v", tc.in, ids, unknown, tc.ids, tc.unknown)
		}
	}
	if got := CurvePreferences(config.SSL{}); got != nil {
		t.Errorf("empty ssl.curves: %v, want nil (Go's defaults)", got)
	}
	if got := CurvePreferences(config.SSL{Curves: "X448"}); got != nil {
		t.Errorf("only unknown curves: %v, want nil (Go's defaults)", got)
	}
	if got := CurvePreferences(config.SSL{Curves: "X25519:P-256"}); !reflect.DeepEqual(got, []tls.CurveID{tls.X25519, tls.CurveP256}) {
		t.Errorf("CurvePreferences = %v", got)
	}
}

func TestGenerateSelfSigned(t *testing.T) {
	certPEM, keyPEM, err := GenerateSelfSigned([]string{"example.test", "127.0.0.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("cert and key do not match: %v", err)
	}
	c := pair.Leaf
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", c.PublicKey)
	}
	if !reflect.DeepEqual(c.DNSNames, []string{"example.test"}) || len(c.IPAddresses) != 2 {
		t.Errorf("SANs: dns %v ip %v", c.DNSNames, c.IPAddresses)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < 10*365*24*time.Hour {
		t.Errorf("valid for %v, want 10 years", life)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c)
	for _, name := range []string{"example.test", "127.0.0.1", "::1"} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("verify as %s: %v", name, err)
		}
	}
	_, _, err = GenerateSelfSigned(nil)
	if err != nil {
		t.Errorf("no hosts: %v", err)
	}
}

// legacyEncrypted writes an EC key with legacy PEM encryption, as `openssl ec -aes256` does.
func legacyEncrypted(t *testing.T, password string) (keyPEM []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 testing legacy input
	block, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", der, []byte(password), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), key
}

func TestDecryptLegacyPEM(t *testing.T) {
	keyPEM, key := legacyEncrypted(t, "s3cret")
	plain, err := DecryptKeyPEM(keyPEM, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(plain)
	got, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil || !got.Equal(key) {
		t.Fatalf("decrypted key differs: %v", err)
	}
	if _, err := DecryptKeyPEM(keyPEM, "wrong"); !errors.Is(err, ErrKeyPassword) {
		t.Errorf("wrong password: %v, want ErrKeyPassword", err)
	}
	if _, err := DecryptKeyPEM(keyPEM, ""); err == nil || !strings.Contains(err.Error(), "set ssl.key_password") {
		t.Errorf("no password: %v", err)
	}
	if _, err := DecryptKeyPEM([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), ""); err == nil || !strings.Contains(err.Error(), "no PEM private key") {
		t.Errorf("no key block: %v", err)
	}
}

func TestDecryptPBES2Sample(t *testing.T) {
	plain, err := DecryptKeyPEM([]byte(opensslPBES2Sample), "pw")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(plain)
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
		t.Fatal(err)
	} else if _, ok := k.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("got %T", k)
	}
	if _, err := DecryptKeyPEM([]byte(opensslPBES2Sample), "pX"); !errors.Is(err, ErrKeyPassword) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := DecryptKeyPEM([]byte(opensslPBES2Sample), ""); err == nil || !strings.Contains(err.Error(), "set ssl.key_password") {
		t.Errorf("no password: %v", err)
	}
}

// TestServerWithEncryptedKey: a server starts from an encrypted key and key_password and handshakes.
func TestServerWithEncryptedKey(t *testing.T) {
	dir := t.TempDir()
	keyPEM, key := legacyEncrypted(t, "pw")
	// Certificate for that key.
	certPEM, _, _ := GenerateSelfSigned([]string{"example.test"})
	block, _ := pem.Decode(certPEM)
	tmpl, _ := x509.ParseCertificate(block.Bytes)
	tmpl.PublicKey = &key.PublicKey
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	ss := serverSSL(certFile, keyFile)
	if _, _, err := Server(ss, nil); err == nil || !strings.Contains(err.Error(), "set ssl.key_password") {
		t.Errorf("without key_password: %v", err)
	}
	ss.KeyPassword = "nope"
	if _, _, err := Server(ss, nil); !errors.Is(err, ErrKeyPassword) {
		t.Errorf("wrong key_password: %v", err)
	}
	ss.KeyPassword = "pw"
	srv, _, err := Server(ss, nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, _ := Client(clientSSL(certFile), "example.test", nil)
	if _, err := handshake(t, srv, cli); err != nil {
		t.Fatal(err)
	}
}

// TestDecryptOpenSSLPKCS8 decrypts keys written by the openssl command in the forms it offers.
func TestDecryptOpenSSLPKCS8(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl command not found; cannot produce PKCS#8 encrypted keys to read")
	}
	dir := t.TempDir()
	plainFile := filepath.Join(dir, "plain.pem")
	_, keyPEM, err := GenerateSelfSigned([]string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(plainFile, keyPEM, 0o600)
	block, _ := pem.Decode(keyPEM)
	want, _ := x509.ParsePKCS8PrivateKey(block.Bytes)

	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"default (aes-256-cbc, hmacWithSHA256)", nil, ""},
		{"aes-128-cbc sha1", []string{"-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1"}, ""},
		{"aes-192-cbc sha512", []string{"-v2", "aes-192-cbc", "-v2prf", "hmacWithSHA512"}, ""},
		{"des3 sha384", []string{"-v2", "des3", "-v2prf", "hmacWithSHA384"}, ""},
		{"scrypt", []string{"-scrypt"}, "scrypt-encrypted keys are not supported"},
		{"PKCS#12 PBE (v1)", []string{"-v1", "PBE-SHA1-3DES"}, "is not supported (only PBES2)"},
		{"ARIA cipher", []string{"-v2", "aria-128-cbc"}, "is not supported (AES-CBC or 3DES-CBC only)"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "enc"+string(rune('a'+i))+".pem")
			args := append([]string{"pkcs8", "-topk8", "-in", plainFile, "-out", out, "-passout", "pass:pw"}, tc.args...)
			if b, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
				t.Skipf("openssl %v cannot write this form here: %v: %s", tc.args, err, b)
			}
			enc, _ := os.ReadFile(out)
			if !bytes.Contains(enc, []byte("ENCRYPTED PRIVATE KEY")) {
				t.Fatalf("openssl did not write an encrypted key: %s", enc)
			}
			plain, err := DecryptKeyPEM(enc, "pw")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "openssl pkey") {
					t.Fatalf("error %v, want %q with a conversion hint", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := pem.Decode(plain)
			got, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil || !got.(*ecdsa.PrivateKey).Equal(want) {
				t.Fatalf("decrypted key differs: %v", err)
			}
			if _, err := DecryptKeyPEM(enc, "wrong"); !errors.Is(err, ErrKeyPassword) {
				t.Errorf("wrong password: %v", err)
			}
		})
	}
}

func FuzzDecryptKeyPEM(f *testing.F) {
	_, plain, _ := GenerateSelfSigned([]string{"x"})
	f.Add(plain, "")
	der, _ := x509.MarshalECPrivateKey(mustKey(f))
	//lint:ignore SA1019 legacy input
	block, _ := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", der, []byte("pw"), x509.PEMCipherAES128)
	f.Add(pem.EncodeToMemory(block), "pw")
	// A PBES2 key as openssl writes it (aes-256-cbc, hmacWithSHA256, 2048 iterations).
	f.Add([]byte(opensslPBES2Sample), "pw")
	f.Add([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n"), "pw")
	old := maxPBKDF2Iterations
	maxPBKDF2Iterations = 5000 // keep each input cheap
	f.Cleanup(func() { maxPBKDF2Iterations = old })
	f.Fuzz(func(t *testing.T, data []byte, password string) {
		out, err := DecryptKeyPEM(data, password)
		if err == nil && len(out) == 0 {
			t.Fatal("no key and no error")
		}
	})
}

func mustKey(tb testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
