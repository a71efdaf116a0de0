package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// Validate checks the config for what fastrojan can run. It reports every problem it finds (joined with
// errors.Join), each an *Error naming the JSON path and what to do. Files named in the config (ssl.cert,
// ssl.key, ...) must be readable.
func (c *Config) Validate() error {
	v := validator{file: c.name}
	if v.file == "" {
		v.file = c.Path
	}
	v.config(c)
	return errors.Join(v.errs...)
}

type validator struct {
	file string
	errs []error
}

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.file, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) port(path string, p int, what string) {
	if p < 1 || p > 65535 {
		v.add(path, "%s must be a port number 1..65535, got %d", what, p)
	}
}

func (v *validator) nonEmpty(path, s, what string) {
	if strings.TrimSpace(s) == "" {
		v.add(path, "%s", what)
	}
}

func (v *validator) readable(path, file, what string) {
	f, err := os.Open(file)
	if err != nil {
		v.errs = append(v.errs, &Error{File: v.file, Path: path, Msg: fmt.Sprintf("%s: %v", what, err), Err: err})
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		v.add(path, "%s: %s is a directory, not a file", what, file)
	}
}

func (v *validator) config(c *Config) {
	switch c.RunType {
	case RunServer, RunClient, RunForward, RunNAT:
	default:
		v.add("$.run_type", "unknown run type %q; use \"server\", \"client\", \"forward\" or \"nat\"", c.RunType)
	}
	server := c.RunType == RunServer

	v.nonEmpty("$.local_addr", c.LocalAddr, "set the address to listen on (for example \"0.0.0.0\" or \"127.0.0.1\")")
	v.port("$.local_port", c.LocalPort, "the port to listen on")
	if server {
		v.nonEmpty("$.remote_addr", c.RemoteAddr, "a server needs the fallback web server's address (where non-Trojan connections go)")
		v.port("$.remote_port", c.RemotePort, "the fallback web server's port")
	} else {
		v.nonEmpty("$.remote_addr", c.RemoteAddr, "set the Trojan server's address")
		v.port("$.remote_port", c.RemotePort, "the Trojan server's port")
	}
	if c.RunType == RunForward {
		v.nonEmpty("$.target_addr", c.TargetAddr, "forward mode needs target_addr")
		v.port("$.target_port", c.TargetPort, "forward mode's target port")
	}

	switch {
	case len(c.Password) == 0 && server && !c.UserDatabase():
		v.add("$.password", "a server needs at least one password (or a user table: mysql.enabled or fastrojan.users.sqlite)")
	case len(c.Password) == 0 && !server:
		v.add("$.password", "a client needs a password (the first one is used)")
	}
	for i, p := range c.Password {
		if p == "" {
			v.add(fmt.Sprintf("$.password[%d]", i), "empty password; remove it or set one")
		}
	}
	if c.UDPTimeout < 1 {
		v.add("$.udp_timeout", "must be at least 1 (seconds), got %d", c.UDPTimeout)
	}
	if c.LogLevel < 0 || c.LogLevel > 5 {
		v.add("$.log_level", "must be 0 (all), 1 (info), 2 (warn), 3 (error), 4 (fatal) or 5 (off), got %d", c.LogLevel)
	}

	v.ssl(&c.SSL, server, server && !c.Fastrojan.ACME.Enabled())
	v.acme(c)
	if c.TCP.FastOpenQLen < 0 {
		v.add("$.tcp.fast_open_qlen", "must not be negative, got %d", c.TCP.FastOpenQLen)
	}
	if c.MySQL.Enabled {
		v.mysql(&c.MySQL, server)
	}
	v.ext(&c.Fastrojan)
	v.pool(&c.Fastrojan)
	v.mux(&c.Mux)
	v.farm(&c.Fastrojan.Farm, server)
	v.tfo(c)
	v.users(c)
	v.probe(&c.Fastrojan)
}

// ssl checks the "ssl" object; needCert is false on a server whose certificate comes by ACME.
func (v *validator) ssl(s *SSL, server, needCert bool) {
	if server {
		switch {
		case !needCert:
		case s.Cert == "":
			v.add("$.ssl.cert", "a server needs a certificate: set ssl.cert to the PEM certificate chain (or get one by ACME: fastrojan.acme)")
		default:
			v.readable("$.ssl.cert", s.Cert, "cannot read the certificate")
		}
		switch {
		case !needCert:
		case s.Key == "":
			v.add("$.ssl.key", "a server needs a private key: set ssl.key to the PEM key file")
		default:
			v.readable("$.ssl.key", s.Key, "cannot read the private key")
		}
		if s.PlainHTTPResponse != "" {
			v.readable("$.ssl.plain_http_response", s.PlainHTTPResponse, "cannot read the plain HTTP response file")
		}
	} else if s.Cert != "" {
		v.readable("$.ssl.cert", s.Cert, "cannot read the certificate to trust")
	}
	for i, p := range s.ALPN {
		if p == "" || len(p) > 255 {
			v.add(fmt.Sprintf("$.ssl.alpn[%d]", i), "an ALPN protocol name must be 1..255 bytes long")
		}
	}
	for _, proto := range slices.Sorted(maps.Keys(s.ALPNPortOverride)) {
		port := s.ALPNPortOverride[proto]
		if proto == "" || len(proto) > 255 {
			v.add(keyPath("$.ssl.alpn_port_override", proto), "an ALPN protocol name must be 1..255 bytes long")
		}
		v.port(keyPath("$.ssl.alpn_port_override", proto), port, "the fallback port for ALPN "+proto)
	}
	if s.SessionTimeout < 0 {
		v.add("$.ssl.session_timeout", "must not be negative, got %d", s.SessionTimeout)
	}
}

func (v *validator) mysql(m *MySQL, server bool) {
	if !server {
		return // trojan-gfw ignores mysql on a client; so do we
	}
	v.nonEmpty("$.mysql.server_addr", m.ServerAddr, "set the MySQL server's address")
	v.port("$.mysql.server_port", m.ServerPort, "the MySQL server's port")
	v.nonEmpty("$.mysql.database", m.Database, "set the MySQL database name")
	v.nonEmpty("$.mysql.username", m.Username, "set the MySQL user name")
	if m.Key != "" {
		v.readable("$.mysql.key", m.Key, "cannot read the MySQL client key")
	}
	if m.Cert != "" {
		v.readable("$.mysql.cert", m.Cert, "cannot read the MySQL client certificate")
	}
	if m.CA != "" {
		v.readable("$.mysql.ca", m.CA, "cannot read the MySQL CA file")
	}
	if (m.Key == "") != (m.Cert == "") {
		v.add("$.mysql.cert", "mysql.key and mysql.cert go together: set both or neither")
	}
}

func (v *validator) ext(e *Ext) {
	durations := []struct {
		key string
		d   Duration
	}{
		{"handshake_timeout", e.HandshakeTimeout},
		{"request_timeout", e.RequestTimeout},
		{"idle_timeout", e.IdleTimeout},
		{"first_payload_wait", e.FirstPayloadWait},
		{"shutdown_timeout", e.ShutdownTimeout},
	}
	for _, d := range durations {
		if d.d <= 0 {
			v.add("$.fastrojan."+d.key, "must be a positive duration such as \"10s\"; leave it out for the default")
		}
	}
	if e.FirstPayloadWait > Duration(5*time.Second) {
		v.add("$.fastrojan.first_payload_wait", "%s is too long: it delays every connection of apps that wait for the server to speak first; use at most 5s", e.FirstPayloadWait)
	}
	if e.MaxConns < 0 {
		v.add("$.fastrojan.max_conns", "must not be negative, got %d (0 means the default, %d)", e.MaxConns, DefaultMaxConns)
	}
	switch e.LogFormat {
	case "text", "json":
	default:
		v.add("$.fastrojan.log_format", "must be \"text\" or \"json\", got %q", e.LogFormat)
	}
}
