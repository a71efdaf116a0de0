package acme

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/mholt/acmez/v3/acme"
)

// Error is an ACME failure for people: the step that failed, the cause, and what to do.
type Error struct {
	Step string // "contact the ACME CA", "prove control of NAME", ...
	Fix  string
	Err  error
}

func (e *Error) Error() string {
	return fmt.Sprintf("acme: %s: %v; fix: %s", e.Step, e.Err, e.Fix)
}

func (e *Error) Unwrap() error { return e.Err }

// explain turns an error of certmagic/acmez into an *Error naming the step that failed and the fix.
func (m *Manager) explain(op string, err error) error {
	if err == nil {
		return nil
	}
	names := strings.Join(m.opts.Domains, ", ")
	var prob acme.Problem
	if errors.As(err, &prob) {
		switch prob.Type {
		case acme.ProblemTypeRateLimited:
			return &Error{Step: op + " for " + names + ": the CA's rate limit", Err: err,
				Fix: "wait until the limit resets (the CA's message says when) and do not restart in a loop; " +
					"for trials use a staging CA (--acme-ca https://acme-staging-v02.api.letsencrypt.org/directory)"}
		case acme.ProblemTypeConnection, acme.ProblemTypeDNS, acme.ProblemTypeUnauthorized,
			acme.ProblemTypeIncorrectResponse, acme.ProblemTypeTLS:
			return &Error{Step: op + ": prove control of " + names + " (challenge " + strings.Join(m.challenges(), ", ") + ")", Err: err,
				Fix: "make " + names + " resolve (DNS A/AAAA) to this server's public address and let the CA reach " + m.reachable() +
					"; nothing else may answer there (no other proxy or web server on those ports)"}
		case acme.ProblemTypeCAA:
			return &Error{Step: op + " for " + names + ": the domain's CAA record", Err: err,
				Fix: "allow this CA in the domain's CAA DNS record, or remove the record"}
		case acme.ProblemTypeRejectedIdentifier, acme.ProblemTypeUnsupportedIdentifier:
			return &Error{Step: op + ": the CA refuses to issue for " + names, Err: err,
				Fix: "use a public DNS name you control (not an IP address, not an internal name)"}
		case acme.ProblemTypeExternalAccountRequired:
			return &Error{Step: op + ": register an account with the CA", Err: err,
				Fix: "this CA needs an external account binding, which fastrojan does not support; use Let's Encrypt (the default)"}
		}
	}
	var unknownCA x509.UnknownAuthorityError
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &unknownCA) || errors.As(err, &certErr) {
		return &Error{Step: op + ": contact the ACME CA at " + m.opts.CA, Err: err,
			Fix: "the CA's HTTPS certificate is not trusted here: for a private CA give its root with --acme-ca-root FILE (fastrojan.acme.ca_root); otherwise install the system CA certificates (apt-get install ca-certificates)"}
	}
	var netErr net.Error
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || errors.As(err, &opErr) || errors.As(err, &netErr) ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host") {
		return &Error{Step: op + ": contact the ACME CA at " + m.opts.CA, Err: err,
			Fix: "check the directory URL (--acme-ca, fastrojan.acme.ca) and that this machine can reach it over HTTPS (DNS, firewall, proxy)"}
	}
	return &Error{Step: op + " for " + names, Err: err,
		Fix: "read the cause above; the server keeps its current certificate and certmagic retries with back-off"}
}

func (m *Manager) challenges() []string {
	var cs []string
	if m.tlsALPN {
		cs = append(cs, "tls-alpn-01")
	}
	if m.http01 {
		cs = append(cs, "http-01")
	}
	return cs
}

func (m *Manager) reachable() string {
	var r []string
	if m.tlsALPN {
		r = append(r, "TCP port "+portOf(m.opts.TLSAddr)+" (tls-alpn-01, this server's Trojan port)")
	}
	if m.http01 {
		r = append(r, "TCP port "+portOf(m.httpAddr)+" (http-01)")
	}
	return strings.Join(r, " and ")
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return p
}
