package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// ACME challenge types a server can answer (RFC 8555, RFC 8737).
const (
	ChallengeTLSALPN = "tls-alpn-01" // on the Trojan listener itself
	ChallengeHTTP    = "http-01"     // on the small port-80 server (acme.http_listen)
)

// Defaults of the "fastrojan.acme" object.
const (
	DefaultACMECA         = "https://acme-v02.api.letsencrypt.org/directory" // Let's Encrypt, production
	DefaultACMEHTTPListen = ":80"
)

// ACME is the "fastrojan.acme" object: a server gets its certificate from an ACME CA (Let's Encrypt by
// default) and renews it while it runs, instead of reading ssl.cert and ssl.key. It is on when
// domains is not empty.
type ACME struct {
	Domains []string `json:"domains"` // names the certificate is for; the first is the link's host
	Email   string   `json:"email"`   // contact for the CA's expiry notices; may be empty
	CA      string   `json:"ca"`      // the CA's directory URL
	// CARoot is a PEM file with the root that signs the CA's own HTTPS API (a private CA); empty:
	// the system roots.
	CARoot string `json:"ca_root"`
	// Storage is the directory for the account, keys and certificates; empty: "acme" under the
	// server's state directory (systemd's $STATE_DIRECTORY, /var/lib/fastrojan as root).
	Storage    string   `json:"storage"`
	HTTPListen string   `json:"http_listen"` // HTTP-01 and redirects to https; "" = no port-80 server
	Challenges []string `json:"challenges"`  // which challenge types to answer; empty = both
}

// DefaultACME returns the defaults of the "fastrojan.acme" object (off: no domains).
func DefaultACME() ACME {
	return ACME{CA: DefaultACMECA, HTTPListen: DefaultACMEHTTPListen, Domains: []string{}, Challenges: []string{}}
}

// Enabled reports whether the server gets its certificate by ACME.
func (a ACME) Enabled() bool { return len(a.Domains) > 0 }

// Challenge reports whether challenge type ct is to be answered.
func (a ACME) Challenge(ct string) bool {
	if ct == ChallengeHTTP && a.HTTPListen == "" {
		return false
	}
	return len(a.Challenges) == 0 || slices.Contains(a.Challenges, ct)
}

// ValidDomain reports why name cannot be in a publicly trusted certificate obtained by HTTP-01 or
// TLS-ALPN-01, or "" if it can.
func ValidDomain(name string) string {
	switch {
	case name == "":
		return "empty name"
	case net.ParseIP(name) != nil:
		return "an IP address: ACME CAs such as Let's Encrypt issue for DNS names here; use a name that resolves to this server, or a self-signed certificate"
	case strings.Contains(name, "*"):
		return "a wildcard needs the DNS-01 challenge, which fastrojan does not answer; name the host itself"
	case !strings.Contains(strings.Trim(name, "."), "."):
		return "not a fully qualified name (no dot): a public CA cannot check it"
	case len(name) > 253:
		return "longer than 253 characters"
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return fmt.Sprintf("label %q is not a valid DNS label", label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Sprintf("character %q is not allowed in a DNS name (write IDNs in punycode, xn--...)", r)
			}
		}
	}
	return ""
}

func (v *validator) acme(c *Config) {
	a := &c.Fastrojan.ACME
	const p = "$.fastrojan.acme"
	if !a.Enabled() {
		return
	}
	if c.RunType != RunServer {
		v.add(p+".domains", "only a server gets certificates by ACME; remove fastrojan.acme from a %s config", c.RunType)
		return
	}
	if c.SSL.Cert != "" || c.SSL.Key != "" {
		v.add("$.ssl.cert", "fastrojan.acme gets the certificate: leave ssl.cert and ssl.key empty, or remove fastrojan.acme to use your own files")
	}
	for i, d := range a.Domains {
		if why := ValidDomain(d); why != "" {
			v.add(fmt.Sprintf("%s.domains[%d]", p, i), "%q: %s", d, why)
		}
	}
	if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		v.add(p+".ca", "must be the https:// URL of the CA's ACME directory (Let's Encrypt: %s), got %q", DefaultACMECA, a.CA)
	}
	if a.CARoot != "" {
		v.readable(p+".ca_root", a.CARoot, "cannot read the CA root")
	}
	if a.HTTPListen != "" {
		if _, _, err := net.SplitHostPort(a.HTTPListen); err != nil {
			v.add(p+".http_listen", "must be HOST:PORT such as \":80\", or \"\" for no HTTP-01 server; got %q", a.HTTPListen)
		}
	}
	for i, ct := range a.Challenges {
		if ct != ChallengeTLSALPN && ct != ChallengeHTTP {
			v.add(fmt.Sprintf("%s.challenges[%d]", p, i), "unknown challenge %q: use %q (on the Trojan port) and/or %q (on http_listen)", ct, ChallengeTLSALPN, ChallengeHTTP)
		}
	}
	if !a.Challenge(ChallengeTLSALPN) && !a.Challenge(ChallengeHTTP) {
		v.add(p+".challenges", "no challenge can be answered: http-01 needs http_listen (\":80\"); or allow tls-alpn-01")
	}
}
