package config

import (
	"strings"
	"testing"
)

func TestValidateACME(t *testing.T) {
	acmeServer := func() *Config {
		c := Default(RunServer)
		c.LocalAddr, c.LocalPort = "0.0.0.0", 443
		c.RemoteAddr, c.RemotePort = "127.0.0.1", 80
		c.Password = []string{"pw"}
		c.Fastrojan.ACME.Domains = []string{"proxy.example.com"}
		return c
	}
	if err := acmeServer().Validate(); err != nil {
		t.Fatalf("server with acme and no ssl.cert: %v", err)
	}
	c := acmeServer()
	c.Fastrojan.ACME.Challenges = []string{ChallengeTLSALPN}
	c.Fastrojan.ACME.HTTPListen = ""
	if err := c.Validate(); err != nil {
		t.Fatalf("tls-alpn-01 only, no port 80: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"with ssl.cert", func(c *Config) { c.SSL.Cert = "/etc/cert.pem" }, "$.ssl.cert: fastrojan.acme gets the certificate"},
		{"ip", func(c *Config) { c.Fastrojan.ACME.Domains = []string{"203.0.113.7"} }, `$.fastrojan.acme.domains[0]: "203.0.113.7": an IP address`},
		{"wildcard", func(c *Config) { c.Fastrojan.ACME.Domains = []string{"a.example.com", "*.example.com"} }, "$.fastrojan.acme.domains[1]: \"*.example.com\": a wildcard needs the DNS-01 challenge"},
		{"no dot", func(c *Config) { c.Fastrojan.ACME.Domains = []string{"proxy"} }, "not a fully qualified name"},
		{"bad char", func(c *Config) { c.Fastrojan.ACME.Domains = []string{"pröxy.example.com"} }, "punycode"},
		{"http ca", func(c *Config) { c.Fastrojan.ACME.CA = "http://ca.example/dir" }, "$.fastrojan.acme.ca: must be the https:// URL"},
		{"ca root missing", func(c *Config) { c.Fastrojan.ACME.CARoot = "/nonexistent/root.pem" }, "$.fastrojan.acme.ca_root: cannot read the CA root"},
		{"http listen", func(c *Config) { c.Fastrojan.ACME.HTTPListen = "80" }, "$.fastrojan.acme.http_listen: must be HOST:PORT"},
		{"unknown challenge", func(c *Config) { c.Fastrojan.ACME.Challenges = []string{"dns-01"} }, `$.fastrojan.acme.challenges[0]: unknown challenge "dns-01"`},
		{"http-01 without listener", func(c *Config) {
			c.Fastrojan.ACME.Challenges = []string{ChallengeHTTP}
			c.Fastrojan.ACME.HTTPListen = ""
		}, "$.fastrojan.acme.challenges: no challenge can be answered"},
		{"client", func(c *Config) { c.RunType = RunClient; c.RemoteAddr = "proxy.example.com" }, "only a server gets certificates by ACME"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := acmeServer()
			tc.mutate(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestACMEDecodes(t *testing.T) {
	doc := `{"run_type":"server","local_addr":"0.0.0.0","local_port":443,"remote_addr":"127.0.0.1","remote_port":80,
	"password":["pw"],"fastrojan":{"acme":{"domains":["proxy.example.com"],"email":"ops@example.com"}}}`
	c, err := Parse([]byte(doc), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	a := c.Fastrojan.ACME
	if !a.Enabled() || a.CA != DefaultACMECA || a.HTTPListen != ":80" || !a.Challenge(ChallengeHTTP) || !a.Challenge(ChallengeTLSALPN) {
		t.Errorf("defaults not applied: %+v", a)
	}
	_, err = Decode([]byte(`{"fastrojan":{"acme":{"domain":"x"}}}`), "config.json")
	if err == nil || !strings.Contains(err.Error(), "$.fastrojan.acme.domain") {
		t.Errorf("unknown key: %v", err)
	}
}
