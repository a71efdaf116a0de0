// Package tlsconf builds the server's and the client's *tls.Config from trojan-gfw's "ssl" settings:
// certificates (with atomic reload), trust, SNI, ALPN, session resumption, and the mapping of OpenSSL
// cipher and curve names to what Go offers.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fastrojan/fastrojan/internal/config"
)

// Server builds the server's TLS config. Certificates come through GetCertificate from a CertStore so that
// Reload (on SIGUSR1, as trojan-gfw) swaps them atomically without dropping connections.
func Server(ssl config.SSL, log *slog.Logger) (*tls.Config, *CertStore, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	store, err := NewCertStore(ssl.Cert, ssl.Key, ssl.KeyPassword, log)
	if err != nil {
		return nil, nil, err
	}
	return ServerWith(ssl, store.GetCertificate, log), store, nil
}

// ServerWith builds the server's TLS config like Server, with certificates from getCert instead of
// ssl.cert/ssl.key (for example an ACME manager's).
func ServerWith(ssl config.SSL, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), log *slog.Logger) *tls.Config {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := &tls.Config{
		GetCertificate:         getCert,
		NextProtos:             slices.Clone(ssl.ALPN),
		CipherSuites:           ciphers(ssl, log),
		CurvePreferences:       CurvePreferences(ssl),
		SessionTicketsDisabled: true,
	}
	logCurves(ssl, log)
	// Resumption as trojan-gfw configures OpenSSL: none without ssl.reuse_session; with it, stateless
	// tickets if ssl.session_ticket, else the server's own session cache (sessions.go).
	switch {
	case !ssl.ReuseSession:
	case ssl.SessionTicket:
		cfg.SessionTicketsDisabled = false
		if ssl.SessionTimeout > 0 {
			limitTicketAge(cfg, time.Duration(ssl.SessionTimeout)*time.Second)
		}
	default:
		ttl := maxSessionLifetime
		if ssl.SessionTimeout > 0 {
			ttl = time.Duration(ssl.SessionTimeout) * time.Second
		}
		newSessionCache(sessionCacheSize, ttl).install(cfg)
	}
	if ssl.DHParam != "" {
		log.Info("ssl.dhparam is ignored: Go offers no DHE key exchange", "dhparam", ssl.DHParam)
	}
	return cfg
}

// Client builds the client's TLS config. ssl.cert on the client is the certificate or CA to trust
// (trojan-gfw); empty means the system roots. verify=false: no verification at all;
// verify_hostname=false: verify the chain but not the name. SNI is ssl.sni, else remoteAddr if it is a
// name (an IP address is verified against the certificate's IP SANs and sends no SNI).
func Client(ssl config.SSL, remoteAddr string, log *slog.Logger) (*tls.Config, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := &tls.Config{
		ServerName:       ssl.SNI,
		NextProtos:       slices.Clone(ssl.ALPN),
		CipherSuites:     ciphers(ssl, log),
		CurvePreferences: CurvePreferences(ssl),
	}
	logCurves(ssl, log)
	if cfg.ServerName == "" {
		cfg.ServerName = remoteAddr
	}
	if ssl.Cert != "" {
		pool, err := loadPool(ssl.Cert)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case !ssl.Verify:
		cfg.InsecureSkipVerify = true
		log.Warn("ssl.verify is false: the server's certificate is not checked; anyone on the path can impersonate it")
	case !ssl.VerifyHostname:
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = verifyChainOnly(cfg.RootCAs)
		log.Warn("ssl.verify_hostname is false: the certificate chain is checked but not the server name")
	}
	if ssl.ReuseSession {
		// Go resumes through session tickets only (TLS 1.2 and 1.3); ssl.session_ticket has no client-side
		// meaning here.
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(0)
	}
	return cfg, nil
}

// verifyChainOnly checks the peer's chain against roots (nil: system roots) without a host name.
// It runs on full handshakes and resumptions alike.
func verifyChainOnly(roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: server sent no certificate")
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return fmt.Errorf("tls: verify server certificate chain: %w", err)
		}
		return nil
	}
}

func loadPool(file string) (*x509.CertPool, error) {
	pemData, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ssl.cert: read certificate to trust: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("ssl.cert: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// ciphers maps ssl.cipher and logs, once per call, what Go cannot honour.
func ciphers(ssl config.SSL, log *slog.Logger) []uint16 {
	ids, unknown := MapCiphers(ssl.Cipher)
	if len(unknown) > 0 {
		log.Info("ssl.cipher: Go does not offer these TLS 1.2 suites; ignoring them", "names", strings.Join(unknown, ":"))
	}
	if ssl.Cipher != "" && len(ids) == 0 {
		log.Warn("ssl.cipher names no suite Go offers; using Go's defaults")
	}
	if !sameTLS13Suites(ssl.CipherTLS13) {
		log.Info("ssl.cipher_tls13 is ignored: Go does not let TLS 1.3 suites be configured; it offers " + config.DefaultCipherTLS13)
	}
	return ids
}

// sameTLS13Suites reports whether s is empty or names exactly the three suites Go offers (in any order).
func sameTLS13Suites(s string) bool {
	if s == "" {
		return true
	}
	want := strings.Split(config.DefaultCipherTLS13, ":")
	got := strings.Split(s, ":")
	slices.Sort(want)
	slices.Sort(got)
	return slices.Equal(want, slices.Compact(got))
}

// CurvePreferences is the key-exchange policy: the groups to offer and accept, in order, from
// ssl.curves. nil means Go's defaults. A client that dials with TCP Fast Open uses
// CurvePreferencesFor instead, which picks key shares that fit in the SYN (DESIGN.md 3.4).
func CurvePreferences(ssl config.SSL) []tls.CurveID {
	if strings.TrimSpace(ssl.Curves) == "" {
		return nil
	}
	ids, _ := MapCurves(ssl.Curves)
	if len(ids) == 0 {
		return nil
	}
	return ids
}

func logCurves(ssl config.SSL, log *slog.Logger) {
	if ssl.Curves == "" {
		return
	}
	ids, unknown := MapCurves(ssl.Curves)
	if len(unknown) > 0 {
		log.Info("ssl.curves: Go does not offer these groups; ignoring them", "names", strings.Join(unknown, ":"))
	}
	if len(ids) == 0 {
		log.Warn("ssl.curves names no group Go offers; using Go's defaults")
	}
}

// limitTicketAge makes the server refuse session tickets older than maxAge (trojan-gfw's
// ssl.session_timeout); Go's own limit is 7 days. The issue time rides in the ticket's encrypted Extra.
func limitTicketAge(cfg *tls.Config, maxAge time.Duration) {
	const tag = "fastrojan-issued:"
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = append(ss.Extra, []byte(tag+time.Now().UTC().Format(time.RFC3339)))
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return nil, err
		}
		for _, e := range ss.Extra {
			if s, ok := strings.CutPrefix(string(e), tag); ok {
				issued, err := time.Parse(time.RFC3339, s)
				if err == nil && time.Since(issued) <= maxAge {
					return ss, nil
				}
			}
		}
		return nil, nil // too old or not ours: full handshake
	}
}

// CertStore holds the server's certificate and swaps it atomically on Reload.
type CertStore struct {
	certFile, keyFile, keyPassword string
	log                            *slog.Logger
	cur                            atomic.Pointer[tls.Certificate]
}

// NewCertStore loads the certificate chain and key (decrypting the key with password if it is
// encrypted).
func NewCertStore(certFile, keyFile, password string, log *slog.Logger) (*CertStore, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &CertStore{certFile: certFile, keyFile: keyFile, keyPassword: password, log: log}
	cert, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(cert)
	s.logCert("loaded certificate", cert)
	return s, nil
}

// GetCertificate serves the current certificate; use it as tls.Config.GetCertificate.
func (s *CertStore) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
}

// Certificate returns the certificate new handshakes get.
func (s *CertStore) Certificate() *tls.Certificate { return s.cur.Load() }

// Reload re-reads ssl.cert and ssl.key. On error the old certificate stays in use. Connections in
// progress are not affected; new handshakes get the new certificate.
func (s *CertStore) Reload() error {
	cert, err := s.load()
	if err != nil {
		s.log.Error("certificate reload failed; keeping the old certificate", "err", err)
		return err
	}
	s.cur.Store(cert)
	s.logCert("reloaded certificate", cert)
	return nil
}

func (s *CertStore) load() (*tls.Certificate, error) {
	if s.certFile == "" || s.keyFile == "" {
		return nil, errors.New("ssl.cert and ssl.key are required on a server")
	}
	certPEM, err := os.ReadFile(s.certFile)
	if err != nil {
		return nil, fmt.Errorf("ssl.cert: %w", err)
	}
	keyPEM, err := os.ReadFile(s.keyFile)
	if err != nil {
		return nil, fmt.Errorf("ssl.key: %w", err)
	}
	plainKey, err := DecryptKeyPEM(keyPEM, s.keyPassword)
	if err != nil {
		return nil, fmt.Errorf("ssl.key %s: %w", s.keyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, plainKey)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s with key %s: %w", s.certFile, s.keyFile, err)
	}
	return &cert, nil
}

func (s *CertStore) logCert(msg string, c *tls.Certificate) {
	if c.Leaf == nil {
		return
	}
	l := c.Leaf
	s.log.Info(msg, "file", s.certFile, "subject", l.Subject.String(), "dns", l.DNSNames,
		"not_after", l.NotAfter.Format(time.RFC3339))
	if time.Until(l.NotAfter) < 14*24*time.Hour {
		s.log.Warn("certificate expires soon", "file", s.certFile, "not_after", l.NotAfter.Format(time.RFC3339))
	}
}
