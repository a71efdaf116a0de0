// Package acmetest runs a local ACME CA for tests: Let's Encrypt's Pebble, in process, with a DNS
// server of its own that resolves every name to one lab address, so nothing leaves the machine.
package acmetest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Options say where Pebble's validation authority looks for the server under test.
type Options struct {
	IP       net.IP // every name resolves to this (A record); a loopback address
	TLSPort  int    // where TLS-ALPN-01 is checked
	HTTPPort int    // where HTTP-01 is checked
	// Hold makes validation wait (DNS answers are held back) until Release: a test can act while
	// an issuance is certainly in progress.
	Hold bool
	// Validity of the certificates issued; default Pebble's (90 days).
	Validity time.Duration
}

// CA is a running Pebble.
type CA struct {
	Directory string // the ACME directory URL
	// APIRootFile is a PEM file with the root of the directory's HTTPS certificate (what a client
	// passes as --acme-ca-root).
	APIRootFile string
	ca          *ca.CAImpl
	db          *db.MemoryStore
	log         *syncBuffer
	srv         *httptest.Server
	gate        *gate
}

// gate holds DNS answers until opened; it counts the queries that waited.
type gate struct {
	open    chan struct{}
	once    sync.Once
	waiting chan struct{} // gets a value for each query that started waiting
}

func (g *gate) wait() {
	select {
	case g.waiting <- struct{}{}:
	default:
	}
	<-g.open
}

// Start runs Pebble until the test ends. Pebble's random validation delays and nonce rejections are
// off; its log is printed if the test fails.
func Start(t testing.TB, opts Options) *CA {
	t.Helper()
	for k, v := range map[string]string{"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"} {
		if err := os.Setenv(k, v); err != nil {
			t.Fatal(err)
		}
	}
	buf := &syncBuffer{}
	logger := log.New(buf, "pebble ", log.Lmicroseconds)
	g := &gate{open: make(chan struct{}), waiting: make(chan struct{}, 64)}
	if !opts.Hold {
		close(g.open)
	}
	dnsAddr := startDNS(t, opts.IP, g)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default", ValidityPeriod: uint64(opts.Validity / time.Second)}})
	validator := va.New(logger, opts.HTTPPort, opts.TLSPort, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	srv := httptest.NewUnstartedServer(front.Handler())
	srv.Config.ErrorLog = log.New(buf, "pebble http ", log.Lmicroseconds)
	srv.StartTLS()
	t.Cleanup(func() {
		g.once.Do(func() {
			if opts.Hold {
				close(g.open)
			}
		})
		srv.Close()
		if t.Failed() {
			t.Logf("pebble log:\n%s", buf.String())
		}
	})
	rootFile := filepath.Join(t.TempDir(), "pebble-api-root.pem")
	apiRoot := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(rootFile, apiRoot, 0o644); err != nil {
		t.Fatal(err)
	}
	return &CA{Directory: srv.URL + "/dir", APIRootFile: rootFile, ca: authority, db: store, log: buf, srv: srv, gate: g}
}

// Roots is the pool of the CA's issuing root: what a client that trusts only this CA uses.
func (c *CA) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.GetRootCert(0).Cert)
	return pool
}

// RootPEM is the issuing root as PEM (for a client's ssl.cert).
func (c *CA) RootPEM() []byte { return c.ca.GetRootCert(0).PEM() }

// Validating returns a channel that receives once validation has started and is being held
// (Options.Hold).
func (c *CA) Validating() <-chan struct{} { return c.gate.waiting }

// Release lets held validations go on.
func (c *CA) Release() { c.gate.once.Do(func() { close(c.gate.open) }) }

// Close stops the CA's directory (the CA becomes unreachable).
func (c *CA) Close() { c.srv.CloseClientConnections(); c.srv.Close() }

// Log is what Pebble logged so far.
func (c *CA) Log() string { return c.log.String() }

// startDNS answers A queries for any name with ip, and every other query with an empty answer, over
// TCP (as Pebble asks) on loopback.
func startDNS(t testing.TB, ip net.IP, g *gate) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		g.wait()
		r := new(dns.Msg)
		r.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				r.Answer = append(r.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   ip.To4(),
				})
			}
		}
		_ = w.WriteMsg(r)
	})
	srv := &dns.Server{Listener: ln, Handler: handler}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
