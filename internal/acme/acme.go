// Package acme gets and renews the server's certificate from an ACME CA (Let's Encrypt by default)
// while the server runs, with certmagic. Challenges are answered by what already listens: TLS-ALPN-01
// on the Trojan listener (its tls.Config recognises the acme-tls/1 protocol before anything else) and
// HTTP-01 on a small port-80 server that otherwise redirects to https, as a real web site does.
//
// Renewals and forced renewals swap the certificate atomically for new handshakes; connections already
// open keep theirs. A failed renewal keeps the last good certificate. The manager never falls back to a
// self-signed certificate: before the very first certificate exists, handshakes get a temporary one
// (in memory, logged), and a failed first issuance is an error for the caller to stop on.
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"

	"github.com/fastrojan/fastrojan/internal/tlsconf"
)

// LetsEncrypt is the default CA: Let's Encrypt's production directory.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// Options configure a Manager.
type Options struct {
	Domains []string // names for the certificate; the first one names it in storage and logs
	Email   string   // contact address for the CA (expiry notices); may be empty
	CA      string   // ACME directory URL; "" = Let's Encrypt
	CARoot  string   // PEM file trusted for the CA's own HTTPS API (a private CA); "" = system roots
	Storage string   // directory for the account, keys and certificates (created 0700)

	// TLSAddr is the Trojan listener's address: TLS-ALPN-01 is answered there (the server's tls.Config
	// must come from TLSConfig). HTTPAddr is where the HTTP-01 server listens; "" = none.
	TLSAddr  string
	HTTPAddr string
	// TLSALPN and HTTP01 choose the challenge types to answer. HTTP-01 needs HTTPAddr.
	TLSALPN, HTTP01 bool

	// ObtainTimeout bounds the first issuance and a forced renewal; default 3 minutes.
	ObtainTimeout time.Duration
	// RenewCheckInterval is how often certificates are checked for renewal; default certmagic's
	// (10 minutes).
	RenewCheckInterval time.Duration
	Logger             *slog.Logger
}

// Manager holds the server's certificate and keeps it valid.
type Manager struct {
	opts Options
	log  *slog.Logger

	cache  *certmagic.Cache
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer

	tlsALPN, http01 bool
	httpAddr        string
	httpSrv         *http.Server
	httpLn          net.Listener

	cur       atomic.Pointer[tls.Certificate]
	curHash   string // certmagic's hash of cur, to drop it from certmagic's cache once replaced
	temporary bool   // cur is the temporary certificate of the first issuance
	mu        sync.Mutex

	renewing  atomic.Bool   // a forced renewal reloads the certificate itself
	ready     chan struct{} // closed when the first ACME certificate is in use
	readyOnce sync.Once
	wg        sync.WaitGroup // HTTP server and event-driven reloads
	closed    atomic.Bool
}

// New checks the options and prepares a Manager; Start makes it work.
func New(opts Options) (*Manager, error) {
	if len(opts.Domains) == 0 {
		return nil, errors.New("acme: no domain names")
	}
	if opts.Storage == "" {
		return nil, errors.New("acme: no storage directory")
	}
	if opts.CA == "" {
		opts.CA = LetsEncrypt
	}
	if opts.ObtainTimeout <= 0 {
		opts.ObtainTimeout = 3 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HTTP01 && opts.HTTPAddr == "" {
		opts.HTTP01 = false
	}
	if !opts.HTTP01 && !opts.TLSALPN {
		return nil, errors.New("acme: no challenge type to answer: enable tls-alpn-01, or http-01 with an HTTP address")
	}
	m := &Manager{opts: opts, log: opts.Logger.With("component", "acme"), ready: make(chan struct{}),
		tlsALPN: opts.TLSALPN, http01: opts.HTTP01, httpAddr: opts.HTTPAddr}
	return m, nil
}

// TLSConfig makes base answer TLS-ALPN-01 challenges and serve the managed certificate: a
// ClientHello offering only acme-tls/1 gets the challenge certificate and that protocol, before
// anything else; every other handshake gets the current certificate and base's settings.
func (m *Manager) TLSConfig(base *tls.Config) *tls.Config {
	base.GetCertificate = m.GetCertificate
	challenge := &tls.Config{
		NextProtos:     []string{acmez.ACMETLS1Protocol},
		MinVersion:     tls.VersionTLS12,
		GetCertificate: m.challengeCertificate,
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if isChallenge(hello) {
			return challenge, nil
		}
		return nil, nil
	}
	return base
}

func isChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmez.ACMETLS1Protocol
}

func (m *Manager) challengeCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if m.magic == nil || !m.tlsALPN {
		return nil, errors.New("acme: no TLS-ALPN-01 challenge in progress")
	}
	return m.magic.GetCertificate(hello)
}

// GetCertificate serves the current certificate (use it as tls.Config.GetCertificate).
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if isChallenge(hello) {
		return m.challengeCertificate(hello)
	}
	if c := m.cur.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("acme: no certificate yet")
}

// Certificate is what new handshakes get now (nil before Start).
func (m *Manager) Certificate() *tls.Certificate { return m.cur.Load() }

// Ready is closed once a certificate from the CA is in use.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Start opens the HTTP-01 server (if configured) and loads a certificate kept in storage from an
// earlier run. Without one, handshakes get a temporary self-signed certificate (in memory only)
// until Obtain succeeds. Call it once the Trojan listener is open; then Obtain.
func (m *Manager) Start(ctx context.Context) error {
	roots, err := loadCARoot(m.opts.CARoot)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.opts.Storage, 0o700); err != nil {
		return fmt.Errorf("acme: storage: %w", err)
	}
	if m.http01 {
		if err := m.listenHTTP01(); err != nil {
			return err
		}
	}
	m.newCertmagic(roots)
	if m.httpLn != nil {
		m.serveHTTP01()
	}
	if err := m.reload(ctx); err == nil {
		return nil // a certificate from an earlier run
	}
	return m.useTemporary()
}

// loadCARoot reads the PEM roots of a private CA's HTTPS certificate; "" is none (the system's).
func loadCARoot(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pemData, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("acme: CA root: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("acme: CA root %s holds no PEM certificate", file)
	}
	return roots, nil
}

// listenHTTP01 opens the HTTP-01 server's port. When it cannot and TLS-ALPN-01 is allowed, HTTP-01
// is switched off with a warning; when TLS-ALPN-01 is not, that is an *Error.
func (m *Manager) listenHTTP01() error {
	ln, err := net.Listen("tcp", m.opts.HTTPAddr)
	switch {
	case err != nil && !m.tlsALPN:
		return &Error{Step: "open the HTTP-01 server on " + m.opts.HTTPAddr, Err: err,
			Fix: "free that port (another web server?) or allow tls-alpn-01 on the Trojan port; binding port 80 needs root or CAP_NET_BIND_SERVICE"}
	case err != nil:
		m.log.Warn("HTTP-01 is off: cannot listen for it; certificates come by TLS-ALPN-01 on the Trojan port only",
			"http_listen", m.opts.HTTPAddr, "err", err)
		m.http01 = false
	default:
		m.httpLn = ln
		m.httpAddr = ln.Addr().String()
	}
	return nil
}

// newCertmagic sets up certmagic's cache, config and ACME issuer: our storage, our challenge
// listeners, the configured CA only, and no prompt on the terminal.
func (m *Manager) newCertmagic(roots *x509.CertPool) {
	zl := zapLogger(m.log)
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		RenewCheckInterval: m.opts.RenewCheckInterval,
		Logger:             zl,
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: m.opts.Storage},
		Logger:  zl,
		OCSP:    certmagic.OCSPConfig{DisableStapling: true},
		OnEvent: m.onEvent,
	})
	tlsHost, tlsPort := splitPort(m.opts.TLSAddr)
	_, httpPort := splitPort(m.httpAddr)
	m.issuer = certmagic.NewACMEIssuer(m.magic, certmagic.ACMEIssuer{
		CA:                      m.opts.CA,
		TestCA:                  m.opts.CA, // never a second CA behind the operator's back
		Email:                   m.opts.Email,
		Agreed:                  true,
		TrustedRoots:            roots,
		DisableHTTPChallenge:    !m.http01,
		DisableTLSALPNChallenge: !m.tlsALPN,
		// The challenge ports are ours: certmagic finds them in use and relies on our listeners
		// instead of opening its own.
		ListenHost:        tlsHost,
		AltTLSALPNPort:    tlsPort,
		AltHTTPPort:       httpPort,
		CertObtainTimeout: m.opts.ObtainTimeout,
		Logger:            zl,
	})
	m.magic.Issuers = []certmagic.Issuer{m.issuer}
	if m.opts.Email == "" {
		// certmagic asks for an e-mail address on the terminal when it has none; a server must not
		// wait for input, so its pre-check never prompts.
		m.magic.Issuers = []certmagic.Issuer{noPrompt{m.issuer}}
	}
}

// serveHTTP01 serves the HTTP-01 challenges (and the redirect to https) on m.httpLn, in a goroutine
// m.wg owns.
func (m *Manager) serveHTTP01() {
	m.httpSrv = &http.Server{
		Handler:           http.HandlerFunc(m.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       20 * time.Second,
		WriteTimeout:      20 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
	}
	m.wg.Go(func() {
		if err := m.httpSrv.Serve(m.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("HTTP-01 server stopped", "err", err)
		}
	})
	m.log.Info("HTTP-01 server listening; other requests are redirected to https", "addr", m.httpAddr)
}

// useTemporary makes handshakes get a self-signed certificate (in memory only) until the CA issues one.
func (m *Manager) useTemporary() error {
	certPEM, keyPEM, err := tlsconf.GenerateSelfSigned(m.opts.Domains)
	if err != nil {
		return fmt.Errorf("acme: temporary certificate: %w", err)
	}
	tmp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("acme: temporary certificate: %w", err)
	}
	m.mu.Lock()
	m.temporary = true
	m.cur.Store(&tmp)
	m.mu.Unlock()
	m.log.Info("no certificate yet: until the CA issues one, handshakes get a temporary self-signed certificate (in memory only, never saved)",
		"domains", m.opts.Domains, "ca", m.opts.CA)
	return nil
}

// Obtain gets the certificate if storage has none (within ObtainTimeout) and puts the domains under
// renewal. With a certificate from an earlier run it returns at once; renewal, when due, runs in the
// background and a failure there keeps the current certificate. The error, if any, is an *Error.
func (m *Manager) Obtain(ctx context.Context) error {
	m.mu.Lock()
	temporary := m.temporary
	m.mu.Unlock()
	if !temporary {
		if err := m.magic.ManageAsync(ctx, m.opts.Domains); err != nil {
			m.log.Error("certificate maintenance", "err", m.explain("renew the certificate", err))
		}
		m.markReady()
		return nil
	}
	m.log.Info("obtaining a certificate", "domains", m.opts.Domains, "ca", m.opts.CA, "challenges", m.challenges())
	octx, cancel := context.WithTimeout(ctx, m.opts.ObtainTimeout)
	defer cancel()
	if err := m.magic.ManageSync(octx, m.opts.Domains); err != nil {
		return m.explain("obtain a certificate", err)
	}
	if err := m.reload(ctx); err != nil {
		return m.explain("load the new certificate", err)
	}
	m.markReady()
	return nil
}

// Renew renews the certificate now, even if it is not due, and swaps it in for new handshakes. On
// failure the current certificate stays; the error is an *Error.
func (m *Manager) Renew(ctx context.Context) error {
	if m.magic == nil {
		return errors.New("acme: not started")
	}
	rctx, cancel := context.WithTimeout(ctx, m.opts.ObtainTimeout)
	defer cancel()
	m.renewing.Store(true)
	defer m.renewing.Store(false)
	if err := m.magic.RenewCertSync(rctx, m.opts.Domains[0], true); err != nil {
		return m.explain("renew the certificate", err)
	}
	return m.reload(ctx)
}

// Reload is SIGUSR1 for an ACME server: renew now (see Renew).
func (m *Manager) Reload() error { return m.Renew(context.Background()) }

// Close stops the HTTP-01 server and renewals. Open connections are not touched.
func (m *Manager) Close() error {
	m.mu.Lock()
	first := m.closed.CompareAndSwap(false, true)
	m.mu.Unlock()
	if !first {
		return nil
	}
	if m.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = m.httpSrv.Shutdown(ctx)
		cancel()
		_ = m.httpSrv.Close()
	}
	if m.cache != nil {
		m.cache.Stop()
	}
	m.wg.Wait()
	return nil
}

func (m *Manager) markReady() { m.readyOnce.Do(func() { close(m.ready) }) }

// reload loads the managed certificate from storage and makes it the one new handshakes get.
func (m *Manager) reload(ctx context.Context) error {
	c, err := m.magic.CacheManagedCertificate(ctx, m.opts.Domains[0])
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.curHash
	tc := c.Certificate
	m.cur.Store(&tc)
	m.curHash, m.temporary = c.Hash(), false
	if old != "" && old != c.Hash() {
		m.cache.Remove([]string{old})
	}
	if tc.Leaf != nil {
		m.log.Info("certificate in use", "domains", tc.Leaf.DNSNames, "issuer", tc.Leaf.Issuer.CommonName,
			"serial", tc.Leaf.SerialNumber.Text(16), "not_after", tc.Leaf.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// onEvent follows certmagic's background renewals: a renewed certificate is swapped in; a failure is
// explained (the current certificate stays).
func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		renewal, _ := data["renewal"].(bool)
		if !renewal || m.renewing.Load() {
			return nil
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if !m.closed.Load() { // under mu: Close cannot be waiting on wg yet
			m.wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := m.reload(ctx); err != nil {
					m.log.Error("renewed certificate could not be loaded; keeping the current one", "err", err)
				}
			})
		}
	case "cert_failed":
		if err, _ := data["error"].(error); err != nil {
			m.log.Error("certificate not renewed; the current one stays in use and the renewal is retried",
				"err", m.explain("renew the certificate", err))
		}
	}
	return nil
}

// serveHTTP answers HTTP-01 challenges and redirects everything else to https, like a web site: to
// the requested name if it is one of ours (else the first), same path and query.
func (m *Manager) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if m.issuer.HandleHTTPChallenge(w, r) {
		return
	}
	host := m.opts.Domains[0]
	asked := r.Host
	if h, _, err := net.SplitHostPort(asked); err == nil {
		asked = h
	}
	for _, d := range m.opts.Domains {
		if strings.EqualFold(asked, d) {
			host = d
		}
	}
	if _, port := splitPort(m.opts.TLSAddr); port != 0 && port != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	path := r.URL.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	query := r.URL.RawQuery // kept only if it is what a real request line can carry
	if _, err := url.ParseQuery(query); err != nil ||
		strings.ContainsFunc(query, func(c rune) bool { return c <= ' ' || c == '#' || c >= 0x7f }) {
		query = ""
	}
	target := url.URL{Scheme: "https", Host: host, Path: path, RawQuery: query}
	http.Redirect(w, r, target.String(), http.StatusMovedPermanently)
}

func splitPort(addr string) (string, int) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0
	}
	port, _ := strconv.Atoi(p)
	return h, port
}

// noPrompt is the ACME issuer with certmagic's interactive e-mail prompt switched off.
type noPrompt struct{ *certmagic.ACMEIssuer }

func (n noPrompt) PreCheck(ctx context.Context, names []string, _ bool) error {
	return n.ACMEIssuer.PreCheck(ctx, names, false)
}
